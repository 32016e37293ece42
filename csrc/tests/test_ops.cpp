// C++ tests of the ops (run by ctest). Besides the CPU ops, they run the per-thread (per-row)
// functions of the CUDA kernels on the host, so the GPU's arithmetic is checked here.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <cmath>
#include <cstdio>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "batchnorm_relu.h"
#include "correlation_grad.h"
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

using BatchNormReluFn = std::tuple<at::Tensor, at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&,
                                                                       const at::Tensor&, double);
using BatchNormReluBackwardFn = std::tuple<at::Tensor, at::Tensor, at::Tensor>(
    const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&);

// Training-mode BatchNorm + ReLU of one row in double, as written in the definition.
std::vector<double> literal_batchnorm_relu(const at::Tensor& row, double weight, double bias, double eps) {
  const at::Tensor x = row.to(at::kDouble);
  const double mean = x.mean().item<double>();
  const double var = (x - mean).pow(2).mean().item<double>();
  std::vector<double> y(x.numel());
  for (int64_t i = 0; i < x.numel(); ++i)
    y[i] = std::max(0.0, weight * (x[i].item<double>() - mean) / std::sqrt(var + eps) + bias);
  return y;
}

// The op (CPU, compiled per ISA), the row functions the CUDA kernels run (called here on the host,
// compiled for the baseline ISA) and the definition must agree; the backward must match central
// finite differences of sum(grad_y * y) in double.
void test_batchnorm_relu_matches_literal() {
  auto& dispatcher = c10::Dispatcher::singleton();
  auto forward = dispatcher.findSchemaOrThrow("realsr_fast::batchnorm_relu", "").typed<BatchNormReluFn>();
  auto backward =
      dispatcher.findSchemaOrThrow("realsr_fast::batchnorm_relu_backward", "").typed<BatchNormReluBackwardFn>();
  at::manual_seed(11);
  for (const auto dtype : {at::kDouble, at::kFloat}) {
    for (const int64_t cols : {2, 37, 48}) {
      const int64_t rows = 5;
      const at::Tensor x = (at::randn({rows, cols}) * 2 + 0.3).to(dtype);
      const at::Tensor weight = (at::randn({rows}) * 0.3 + 1).to(dtype);
      const at::Tensor bias = (at::randn({rows}) * 0.5).to(dtype);
      const at::Tensor grad_y = at::randn({rows, cols}).to(dtype);
      const auto [y, mean, invstd] = forward.call(x, weight, bias, 1e-5);
      const auto [grad_x, grad_weight, grad_bias] = backward.call(grad_y, x, y, mean, invstd, weight);
      const double tol = dtype == at::kDouble ? 1e-9 : 1e-4;

      const BatchNormReluCall call = prepare_batchnorm_relu(x, weight, bias, 1e-5);
      const BatchNormReluBackwardCall back = prepare_batchnorm_relu_backward(grad_y, x, y, mean, invstd, weight);
      AT_DISPATCH_FLOATING_TYPES(dtype, "test", [&] {
        for (int64_t r = 0; r < rows; ++r) {
          batchnorm_relu_row(call.params<scalar_t>(), r);
          batchnorm_relu_backward_row(back.params<scalar_t>(), r);
        }
      });
      EXPECT(at::allclose(call.y, y, tol, tol) && at::allclose(back.grad_x, grad_x, tol, tol),
             "cols %ld: host row functions differ from the op", cols);

      const at::Tensor xd = x.to(at::kDouble), gd = grad_y.to(at::kDouble);
      const auto loss = [&](const at::Tensor& xs, int64_t r, double w, double b) {
        const std::vector<double> out = literal_batchnorm_relu(xs[r], w, b, 1e-5);
        double total = 0;
        for (int64_t i = 0; i < cols; ++i) total += gd[r][i].item<double>() * out[i];
        return total;
      };
      for (int64_t r = 0; r < rows; ++r) {
        const double w = weight[r].item<double>(), b = bias[r].item<double>();
        const std::vector<double> want = literal_batchnorm_relu(xd[r], w, b, 1e-5);
        for (int64_t i = 0; i < cols; ++i)
          EXPECT(std::fabs(y[r][i].item<double>() - want[i]) < tol, "y[%ld][%ld] cols %ld", r, i, cols);
        const double h = 1e-6;
        EXPECT(std::fabs(grad_bias[r].item<double>() - (loss(xd, r, w, b + h) - loss(xd, r, w, b - h)) / (2 * h)) < 1e-3,
               "grad_bias[%ld] cols %ld", r, cols);
        EXPECT(std::fabs(grad_weight[r].item<double>() - (loss(xd, r, w + h, b) - loss(xd, r, w - h, b)) / (2 * h)) < 1e-3,
               "grad_weight[%ld] cols %ld", r, cols);
        for (int64_t i = 0; i < cols; i += 7) {
          at::Tensor plus = xd.clone(), minus = xd.clone();
          plus[r][i] += h;
          minus[r][i] -= h;
          const double numeric = (loss(plus, r, w, b) - loss(minus, r, w, b)) / (2 * h);
          EXPECT(std::fabs(grad_x[r][i].item<double>() - numeric) < 1e-3, "grad_x[%ld][%ld] cols %ld: %g vs %g", r, i,
                 cols, grad_x[r][i].item<double>(), numeric);
        }
      }
    }
  }
}

// correlation_kernel_grad (the op and the per-row function of the CUDA kernel) against the sum.
void test_correlation_kernel_grad_matches_literal() {
  auto op = c10::Dispatcher::singleton()
                .findSchemaOrThrow("realsr_fast::correlation_kernel_grad", "")
                .typed<at::Tensor(const at::Tensor&, const at::Tensor&, int64_t, int64_t)>();
  at::manual_seed(13);
  const int64_t batch = 3, images = 2, size = 7, stride = 2, height = 31, width = 27;
  const int64_t out_h = (height - size) / stride + 1, out_w = (width - size) / stride + 1;
  for (const auto dtype : {at::kDouble, at::kFloat}) {
    const at::Tensor x = at::randn({batch, images, height, width}).to(dtype);
    const at::Tensor grad = at::randn({batch, images, out_h, out_w}).to(dtype);
    const at::Tensor got = op.call(x, grad, stride, size);
    const CorrelationKernelGradCall call = prepare_correlation_kernel_grad(x, grad, stride, size);
    AT_DISPATCH_FLOATING_TYPES(dtype, "test", [&] {
      for (int64_t n = 0; n < images; ++n)
        for (int64_t u = 0; u < size; ++u) correlation_kernel_grad_row(call.params<scalar_t>(), n, u);
    });
    const at::Tensor xd = x.to(at::kDouble), gd = grad.to(at::kDouble);
    const auto xa = xd.accessor<double, 4>();
    const auto ga = gd.accessor<double, 4>();
    const double tol = dtype == at::kDouble ? 1e-10 : 1e-3;
    for (int64_t n = 0; n < images; ++n)
      for (int64_t u = 0; u < size; ++u)
        for (int64_t v = 0; v < size; ++v) {
          double want = 0;
          for (int64_t b = 0; b < batch; ++b)
            for (int64_t i = 0; i < out_h; ++i)
              for (int64_t j = 0; j < out_w; ++j) want += ga[b][n][i][j] * xa[b][n][stride * i + u][stride * j + v];
          EXPECT(std::fabs(got[n][u][v].item<double>() - want) < tol, "op at %ld,%ld,%ld", n, u, v);
          EXPECT(std::fabs(call.grad_kernel[n][u][v].item<double>() - want) < tol, "row function at %ld,%ld,%ld", n, u, v);
        }
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
      {"batchnorm_relu_matches_literal", test_batchnorm_relu_matches_literal},
      {"correlation_kernel_grad_matches_literal", test_correlation_kernel_grad_matches_literal},
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
