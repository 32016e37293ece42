// The instruction set the CPU clones run (cpu_dispatch.h): decided when the library loads, and
// switchable at run time through the op realsr_fast::set_cpu_isa.
#include "cpu_dispatch.h"

#include <c10/util/Exception.h>
#include <c10/util/string_view.h>
#include <torch/library.h>

#include <atomic>
#include <cstdlib>
#include <string>

namespace realsr_fast {
namespace {

Isa best_supported() {
#if defined(__GNUC__) && defined(__x86_64__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return Isa::Avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::Avx2;
#endif
  return Isa::Baseline;
}

struct IsaChoice {
  Isa isa;
  std::string error;  // empty when REALSR_FAST_ISA is unset or valid
};

IsaChoice choose_isa() {
  const Isa best = best_supported();
  const char* env = std::getenv("REALSR_FAST_ISA");
  if (env == nullptr || *env == '\0') return {best, ""};
  const std::string wanted(env);
  for (const Isa isa : {Isa::Baseline, Isa::Avx2, Isa::Avx512}) {
    if (wanted != isa_name(isa)) continue;
    if (static_cast<int>(isa) > static_cast<int>(best))
      return {best, "REALSR_FAST_ISA=" + wanted + " but this CPU supports at most " + isa_name(best) +
                        "; unset it or choose baseline..." + isa_name(best)};
    return {isa, ""};
  }
  return {best, "REALSR_FAST_ISA=" + wanted + " is not an instruction set; use baseline, avx2 or avx512 (or unset it)"};
}

const IsaChoice kChoice = choose_isa();  // read once, when the library loads
std::atomic<int> current_isa{static_cast<int>(kChoice.isa)};

std::string cpu_isa() { return isa_name(selected_isa()); }

// Switches the clone at run time (benchmarks and tests compare clones in one process); returns
// the previous one.
std::string set_cpu_isa(c10::string_view requested) {
  const std::string previous = cpu_isa(), name(requested);
  const Isa best = best_supported();
  for (const Isa isa : {Isa::Baseline, Isa::Avx2, Isa::Avx512}) {
    if (name != isa_name(isa)) continue;
    TORCH_CHECK_VALUE(static_cast<int>(isa) <= static_cast<int>(best), "realsr_fast: this CPU supports at most ",
                      isa_name(best), ", not ", name);
    current_isa = static_cast<int>(isa);
    return previous;
  }
  TORCH_CHECK_VALUE(false, "realsr_fast: '", name, "' is not an instruction set; use baseline, avx2 or avx512");
  return previous;  // unreachable
}

}  // namespace

Isa selected_isa() {
  TORCH_CHECK_VALUE(kChoice.error.empty(), "realsr_fast: ", kChoice.error);
  return static_cast<Isa>(current_isa.load(std::memory_order_relaxed));
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Avx512:
      return "avx512";
    case Isa::Avx2:
      return "avx2";
    default:
      return "baseline";
  }
}

TORCH_LIBRARY_FRAGMENT(realsr_fast, m) {
  m.def("cpu_isa() -> str", &cpu_isa);
  m.def("set_cpu_isa(str isa) -> str", &set_cpu_isa);
}

}  // namespace realsr_fast
