// C++ tests of the ops (run by ctest). Besides the CPU ops, they run degrade_sample() — the
// per-thread function of the CUDA kernel — on the host, so the GPU's arithmetic is checked here.
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <cmath>
#include <cstdio>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "degrade.h"
#include "op_args.h"
#include "patch_stats.h"

using namespace realsr_fast;

namespace {

int failures = 0;

#define EXPECT(cond, ...)                                          \
  do {                                                             \
    if (!(cond)) {                                                 \
      ++failures;                                                  \
      std::fprintf(stderr, "%s:%d: expected %s: ", __FILE__, __LINE__, #cond); \
      std::fprintf(stderr, __VA_ARGS__);                           \
      std::fprintf(stderr, "\n");                                  \
    }                                                              \
  } while (0)

const char* const kPaddingNames[] = {"symmetric", "reflect", "replicate", "zeros"};

// The extension written out by hand: the sequence a padding mode repeats around x_0..x_{n-1}.
int64_t explicit_extension(int64_t i, int64_t n, Padding padding) {
  std::vector<int64_t> period;  // one period of the extended sequence, starting at index 0
  switch (padding) {
    case Padding::Symmetric:  // a b c d | d c b a
      for (int64_t t = 0; t < n; ++t) period.push_back(t);
      for (int64_t t = n - 1; t >= 0; --t) period.push_back(t);
      break;
    case Padding::Reflect:  // a b c d | c b
      for (int64_t t = 0; t < n; ++t) period.push_back(t);
      for (int64_t t = n - 2; t >= 1; --t) period.push_back(t);
      break;
    case Padding::Replicate:
      return i < 0 ? 0 : (i >= n ? n - 1 : i);
    default:
      return (i < 0 || i >= n) ? -1 : i;
  }
  const int64_t len = static_cast<int64_t>(period.size());
  return period[((i % len) + len) % len];
}

void test_map_coordinate() {
  for (int pad = 0; pad < 4; ++pad)
    for (int64_t n = 1; n <= 7; ++n)
      for (int64_t i = -4 * n; i <= 5 * n; ++i) {
        const auto padding = static_cast<Padding>(pad);
        const int64_t got = map_coordinate(i, n, padding), want = explicit_extension(i, n, padding);
        EXPECT(got == want, "%s n=%ld i=%ld: %ld != %ld", kPaddingNames[pad], n, i, got, want);
      }
}

void test_store_rounding() {
  uint8_t out[4];
  const float values[4] = {-0.2f, 1.7f, 128.0f / 255.0f, 0.2f};
  for (int t = 0; t < 4; ++t) store_unit_value(out, t, Scalar::UInt8, values[t]);
  EXPECT(out[0] == 0 && out[1] == 255 && out[2] == 128 && out[3] == 51, "%d %d %d %d", out[0], out[1], out[2], out[3]);
  EXPECT(round_half_even(2.5f) == 2.0f && round_half_even(3.5f) == 4.0f, "ties must round to even");
  EXPECT(finish_sample(0.5f / 255.0f + 1e-9f, true, true) * 255.0f < 1.5f, "quantize keeps small values small");
}

using DegradeFn = at::Tensor(const at::Tensor&, const at::Tensor&, int64_t, const std::optional<at::Tensor>&,
                             const std::optional<at::Tensor>&, const std::optional<at::Tensor>&, c10::string_view,
                             bool, bool, std::optional<at::ScalarType>);

template <typename T>
float host_degrade_sample(const DegradeParams& p, int64_t b, int64_t c, int64_t i, int64_t j) {
  return degrade_sample<T>(p, b, c, i, j);
}

void test_degrade_sample_matches_cpu_op() {
  auto op = c10::Dispatcher::singleton().findSchemaOrThrow("realsr_fast::degrade", "").typed<DegradeFn>();
  at::manual_seed(7);
  struct Case { int64_t k, scale; at::ScalarType dtype; };
  const Case cases[] = {{1, 1, at::kByte}, {4, 2, at::kFloat}, {9, 3, at::kHalf}, {33, 4, at::kByte}, {8, 4, at::kBFloat16}};
  for (const Case& cs : cases)
    for (int pad = 0; pad < 4; ++pad) {
      const int64_t height = cs.k + 11, width = cs.k + 17;
      at::Tensor hr = at::rand({2, 3, height, width});
      hr = cs.dtype == at::kByte ? (hr * 255).round().to(at::kByte) : hr.to(cs.dtype);
      at::Tensor kernels = at::rand({2, cs.k, cs.k});
      kernels = kernels / kernels.sum({1, 2}, true);
      const int64_t out_h = (height + cs.scale - 1) / cs.scale, out_w = (width + cs.scale - 1) / cs.scale;
      const at::Tensor bank = (at::rand({3, 3, out_h + 5, out_w + 5}) * 255).round().to(at::kByte);
      const at::Tensor index = at::tensor({2, 0}, at::kLong);
      const at::Tensor offset = at::tensor({1, 4, 5, 0}, at::kLong).reshape({2, 2});
      const at::Tensor hr_cl = hr.contiguous(at::MemoryFormat::ChannelsLast);
      const at::Tensor want = op.call(hr_cl, kernels, cs.scale, bank, index, offset, kPaddingNames[pad], true, false, std::nullopt);

      DegradeCall call = prepare_degrade(hr_cl, kernels, cs.scale, bank, index, offset, kPaddingNames[pad], true, false, std::nullopt);
      DegradeParams& p = call.params;
      for (int64_t plane = 0; plane < 6; ++plane) {  // what noise_mean_kernel computes
        double sum = 0;
        for (int64_t i = 0; i < out_h; ++i)
          for (int64_t j = 0; j < out_w; ++j) sum += noise_crop_value(p, plane / 3, plane % 3, i, j);
        p.noise_mean[plane] = sum / static_cast<double>(out_h * out_w);
      }
      const auto sample = cs.dtype == at::kByte ? host_degrade_sample<uint8_t>
                          : cs.dtype == at::kHalf ? host_degrade_sample<c10::Half>
                          : cs.dtype == at::kBFloat16 ? host_degrade_sample<c10::BFloat16>
                                                      : host_degrade_sample<float>;
      const auto w = want.accessor<float, 4>();
      double worst = 0;
      for (int64_t b = 0; b < 2; ++b)
        for (int64_t c = 0; c < 3; ++c)
          for (int64_t i = 0; i < out_h; ++i)
            for (int64_t j = 0; j < out_w; ++j) worst = std::max(worst, std::fabs(double(sample(p, b, c, i, j)) - w[b][c][i][j]));
      EXPECT(worst < 2e-6, "k=%ld s=%ld %s: max difference %g", cs.k, cs.scale, kPaddingNames[pad], worst);
    }
}

void test_patch_stats_matches_brute_force() {
  auto op = c10::Dispatcher::singleton()
                .findSchemaOrThrow("realsr_fast::patch_stats", "")
                .typed<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, int64_t, int64_t)>();
  at::manual_seed(3);
  const at::Tensor img = at::randint(0, 256, {1, 3, 57, 83}, at::kByte);
  const int64_t patch = 13, stride = 5;
  const auto [mean, var] = op.call(img, patch, stride);
  const auto px = img.accessor<uint8_t, 4>();
  const auto m = mean.accessor<float, 3>();
  const auto v = var.accessor<float, 3>();
  EXPECT(mean.size(1) == (57 - patch) / stride + 1 && mean.size(2) == (83 - patch) / stride + 1, "output size");
  for (int64_t oi = 0; oi < mean.size(1); ++oi)
    for (int64_t oj = 0; oj < mean.size(2); ++oj) {
      double s = 0, q = 0;
      for (int64_t y = oi * stride; y < oi * stride + patch; ++y)
        for (int64_t x = oj * stride; x < oj * stride + patch; ++x) {
          const double g = (19595 * px[0][0][y][x] + 38470 * px[0][1][y][x] + 7471 * px[0][2][y][x] + 32768) >> 16;
          s += g;
          q += g * g;
        }
      const double n = patch * patch, mu = s / n;
      EXPECT(std::fabs(m[0][oi][oj] - mu) < 1e-4, "mean at %ld,%ld", oi, oj);
      EXPECT(std::fabs(v[0][oi][oj] - (q / n - mu * mu)) < 1e-3, "var at %ld,%ld", oi, oj);
    }
}

// The CUDA path of patch_stats (one column per thread, then one output row per thread), run on
// the host, must give exactly what the CPU op gives.
void test_patch_stats_cuda_passes_match_cpu_op() {
  auto op = c10::Dispatcher::singleton()
                .findSchemaOrThrow("realsr_fast::patch_stats", "")
                .typed<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, int64_t, int64_t)>();
  at::manual_seed(5);
  const at::Tensor u8 = at::randint(0, 256, {2, 3, 71, 64}, at::kByte);
  const at::Tensor images[] = {u8, u8.to(at::kFloat).div(255).contiguous(at::MemoryFormat::ChannelsLast),
                               u8.narrow(1, 0, 1)};
  for (const at::Tensor& img : images) {
    const auto [want_mean, want_var] = op.call(img, 16, 3);
    PatchStatsCall call = prepare_patch_stats(img, 16, 3);
    const PatchStatsParams& p = call.params;
    for (int64_t b = 0; b < p.batch; ++b) {
      for (int64_t x = 0; x < p.width; ++x)
        call.integer ? column_window_sums<int64_t>(p, b, x) : column_window_sums<double>(p, b, x);
      for (int64_t oi = 0; oi < p.out_height; ++oi)
        call.integer ? row_window_stats<int64_t>(p, b, oi) : row_window_stats<double>(p, b, oi);
    }
    const double mean_diff = (call.mean - want_mean).abs().max().item<double>();
    const double var_diff = (call.var - want_var).abs().max().item<double>();
    EXPECT(mean_diff < 1e-4 && var_diff < 1e-3, "%s: mean diff %g, var diff %g",
           c10::toString(img.scalar_type()), mean_diff, var_diff);
  }
}

void test_bad_noise_offset_is_rejected() {
  const at::Tensor hr = at::rand({1, 3, 16, 16});
  const at::Tensor bank = at::rand({1, 3, 6, 6});
  bool threw = false;
  try {
    prepare_degrade(hr, at::ones({3, 3}), 4, bank, at::zeros({1}, at::kLong), at::full({1, 2}, 3, at::kLong),
                    "symmetric", true, false, std::nullopt);
  } catch (const c10::ValueError&) {
    threw = true;
  }
  EXPECT(threw, "an offset that leaves the bank must raise ValueError");
}

}  // namespace

int main(int argc, char** argv) {
  const std::map<std::string, std::function<void()>> tests = {
      {"map_coordinate", test_map_coordinate},
      {"store_rounding", test_store_rounding},
      {"degrade_sample_matches_cpu_op", test_degrade_sample_matches_cpu_op},
      {"patch_stats_matches_brute_force", test_patch_stats_matches_brute_force},
      {"patch_stats_cuda_passes_match_cpu_op", test_patch_stats_cuda_passes_match_cpu_op},
      {"bad_noise_offset_is_rejected", test_bad_noise_offset_is_rejected},
  };
  int ran = 0;
  for (const auto& [name, test] : tests) {
    if (argc > 1 && name != argv[1]) continue;
    test();
    ++ran;
  }
  if (ran == 0) {
    std::fprintf(stderr, "unknown test %s\n", argv[1]);
    return 2;
  }
  std::printf("%d test(s), %d failed check(s)\n", ran, failures);
  return failures == 0 ? 0 : 1;
}
