// Instruction-set dispatch for the CPU kernels' hot loops.
//
// REALSR_ISA_CLONES(name, impl) defines `name(args...)`, which runs `impl(args...)` compiled three
// times: for AVX-512, AVX2 + FMA and baseline x86-64. The clone is chosen when the library loads:
// the best the CPU supports, or the one the environment variable REALSR_FAST_ISA names
// (baseline | avx2 | avx512), so that every clone can be tested and timed on one machine; the op
// realsr_fast::set_cpu_isa switches it later (realsr_fast.ops.forced_cpu_isa).
// `impl` must be REALSR_ALWAYS_INLINE (as must everything it calls in its hot loop; HOST_DEVICE
// functions are) so that its body is compiled inside each clone rather than once for the baseline.
// Work handed to at::parallel_for must call a clone from inside the lambda: a lambda body is a
// separate function, compiled for the baseline.
#pragma once

#include <utility>

#if defined(__GNUC__)
#define REALSR_ALWAYS_INLINE __attribute__((always_inline)) inline
#else
#define REALSR_ALWAYS_INLINE inline
#endif

#if defined(__GNUC__) && defined(__x86_64__)
#define REALSR_TARGET_AVX512 __attribute__((target("avx512f,avx2,fma")))
#define REALSR_TARGET_AVX2 __attribute__((target("avx2,fma")))
#else
#define REALSR_TARGET_AVX512
#define REALSR_TARGET_AVX2
#endif

namespace realsr_fast {

enum class Isa { Baseline = 0, Avx2 = 1, Avx512 = 2 };

// The clone every REALSR_ISA_CLONES function runs. Raises ValueError when REALSR_FAST_ISA names
// an unknown instruction set or one this CPU lacks.
Isa selected_isa();

// "baseline", "avx2" or "avx512": what selected_isa() returns (the op realsr_fast::cpu_isa).
const char* isa_name(Isa isa);

}  // namespace realsr_fast

#define REALSR_ISA_CLONES(name, impl)                                                          \
  template <typename... Args>                                                                  \
  REALSR_TARGET_AVX512 void name##_avx512(Args&&... args) {                                    \
    impl(std::forward<Args>(args)...);                                                         \
  }                                                                                            \
  template <typename... Args>                                                                  \
  REALSR_TARGET_AVX2 void name##_avx2(Args&&... args) {                                        \
    impl(std::forward<Args>(args)...);                                                         \
  }                                                                                            \
  template <typename... Args>                                                                  \
  void name##_baseline(Args&&... args) {                                                       \
    impl(std::forward<Args>(args)...);                                                         \
  }                                                                                            \
  template <typename... Args>                                                                  \
  void name(Args&&... args) {                                                                  \
    switch (::realsr_fast::selected_isa()) {                                                   \
      case ::realsr_fast::Isa::Avx512:                                                         \
        return name##_avx512(std::forward<Args>(args)...);                                     \
      case ::realsr_fast::Isa::Avx2:                                                           \
        return name##_avx2(std::forward<Args>(args)...);                                       \
      default:                                                                                 \
        return name##_baseline(std::forward<Args>(args)...);                                   \
    }                                                                                          \
  }
