// C++ tests of the ops (run by ctest). Besides the CPU ops, they run the per-thread (per-row)
// functions of the CUDA kernels on the host, so the GPU's arithmetic is checked here.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <algorithm>
#include <barrier>
#include <cmath>
#include <cstdio>
#include <limits>
#include <thread>
#include <type_traits>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "batchnorm_relu.h"
#include "correlation_grad.h"
#include "degrade.h"
#include "launch_plan.h"
#include "op_args.h"
#include "patch_stats.h"
#include "winograd.h"

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
  // Quantising snaps every value within 0.4 / 255 of a level to that level (and clamps first).
  for (int level = 0; level <= 255; ++level)
    for (const float offset : {-0.4f, 0.0f, 0.4f}) {
      const float got = finish_sample((level + offset) / 255.0f, true, true);
      EXPECT(got == level / 255.0f, "level %d offset %g: got %g / 255", level, offset, got * 255.0f);
    }
  EXPECT(finish_sample(-0.3f, true, true) == 0.0f && finish_sample(1.3f, true, true) == 1.0f, "clamp before quantise");
  EXPECT(finish_sample(1.3f, false, false) == 1.3f, "no clamp, no quantise: unchanged");
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

// The CUDA path of patch_stats (launch_plan.h: chunks of output rows per column thread, then a
// warp of 32 lanes per output), run on the host, must give what the CPU op gives.
void test_patch_stats_cuda_passes_match_cpu_op() {
  auto op = c10::Dispatcher::singleton()
                .findSchemaOrThrow("realsr_fast::patch_stats", "")
                .typed<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, int64_t, int64_t)>();
  at::manual_seed(5);
  const at::Tensor u8 = at::randint(0, 256, {2, 3, 71, 64}, at::kByte);
  const at::Tensor images[] = {u8, u8.to(at::kFloat).div(255).contiguous(at::MemoryFormat::ChannelsLast),
                               u8.narrow(1, 0, 1)};
  for (const at::Tensor& img : images)
    for (const int64_t target_threads : {1, 300, 1 << 18}) {  // 1 chunk, a few, one output row each
      const auto [want_mean, want_var] = op.call(img, 16, 3);
      PatchStatsCall call = prepare_patch_stats(img, 16, 3);
      const PatchStatsParams& p = call.params;
      const int64_t chunk = column_chunk_rows(p, target_threads);
      EXPECT(chunk >= 1 && chunk <= p.out_height, "chunk rows %ld", chunk);
      for (int64_t b = 0; b < p.batch; ++b)
        for (int64_t oi0 = 0; oi0 < p.out_height; oi0 += chunk)
          for (int64_t x = 0; x < p.width; ++x) {
            const int64_t oi1 = std::min(p.out_height, oi0 + chunk);
            call.integer ? column_chunk_sums<int64_t>(p, b, x, oi0, oi1) : column_chunk_sums<double>(p, b, x, oi0, oi1);
          }
      const auto warp_output = [&](auto zero, int64_t b, int64_t oi, int64_t oj) {
        using Acc = decltype(zero);
        Acc s = 0, q = 0;
        for (int64_t lane = 0; lane < kWarpSize; ++lane) {
          Acc ls, lq;
          patch_row_partial<Acc>(p, b, oi, oj, lane, kWarpSize, ls, lq);
          s += ls;
          q += lq;
        }
        store_patch_stats<Acc>(p, (b * p.out_height + oi) * p.out_width + oj, s, q);
      };
      for (int64_t b = 0; b < p.batch; ++b)
        for (int64_t oi = 0; oi < p.out_height; ++oi)
          for (int64_t oj = 0; oj < p.out_width; ++oj)
            call.integer ? warp_output(int64_t(0), b, oi, oj) : warp_output(0.0, b, oi, oj);
      const double mean_diff = (call.mean - want_mean).abs().max().item<double>();
      const double var_diff = (call.var - want_var).abs().max().item<double>();
      EXPECT(mean_diff < 1e-4 && var_diff < 1e-3, "%s, chunk %ld: mean diff %g, var diff %g",
             c10::toString(img.scalar_type()), chunk, mean_diff, var_diff);
      if (call.integer) EXPECT(mean_diff == 0 && var_diff == 0, "uint8 statistics must be exact");
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

// Bound checks near the int64 limit: `o + n <= size` would wrap negative and pass.
void test_bound_checks_do_not_overflow() {
  const int64_t big = int64_t(1) << 62, max = std::numeric_limits<int64_t>::max();
  EXPECT(crop_fits(0, 4, 4) && crop_fits(2, 2, 4) && !crop_fits(3, 2, 4) && !crop_fits(-1, 2, 4), "small crops");
  EXPECT(!crop_fits(max - 1, 4, 16) && !crop_fits(big, big, 16) && !crop_fits(max, 1, max - 1), "huge offsets");
  EXPECT(strided_reach_fits(26, 2, 13, 63) && !strided_reach_fits(26, 2, 13, 62), "reach 2*25+13 = 63");
  EXPECT(!strided_reach_fits(big, 4, 13, 64) && !strided_reach_fits(3, big, 13, 64) && !strided_reach_fits(1, 1, big, 64),
         "huge counts, strides or sizes");
  bool threw = false;
  try {
    prepare_degrade(at::rand({1, 3, 16, 16}), at::ones({3, 3}), 4, at::rand({1, 3, 6, 6}), at::zeros({1}, at::kLong),
                    at::tensor({max - 2, int64_t(0)}, at::kLong).reshape({1, 2}), "symmetric", true, false, std::nullopt);
  } catch (const c10::ValueError&) {
    threw = true;
  }
  EXPECT(threw, "an offset of 2**63 - 3 must raise ValueError");
}

// --- The CUDA launch glue (launch_plan.h) run on the host ---

// A team of std::threads standing in for a CUDA block: sum() exchanges the partial values through
// a shared array between two barriers, as BlockTeam does through shared memory.
struct TeamState {
  explicit TeamState(int n) : size(n), barrier(n), floats(n), ints(n) {}
  int size;
  std::barrier<> barrier;
  std::vector<double> floats;
  std::vector<int64_t> ints;
};

struct HostTeam {
  TeamState* state;
  int64_t me;
  int64_t rank() const { return me; }
  int64_t size() const { return state->size; }
  template <typename T>
  T sum(T v) const {
    if constexpr (std::is_integral_v<T>) state->ints[me] = v; else state->floats[me] = static_cast<double>(v);
    state->barrier.arrive_and_wait();
    T total = 0;
    for (int r = 0; r < state->size; ++r) total += std::is_integral_v<T> ? T(state->ints[r]) : T(state->floats[r]);
    state->barrier.arrive_and_wait();
    return total;
  }
};

template <typename Fn>
void run_team(int size, const Fn& fn) {
  TeamState state(size);
  std::vector<std::thread> threads;
  for (int r = 0; r < size; ++r) threads.emplace_back([&, r] { fn(HostTeam{&state, r}); });
  for (std::thread& t : threads) t.join();
}

void test_launch_geometry() {
  EXPECT(blocks_for(0, 256, 100) == 1 && blocks_for(256, 256, 100) == 1 && blocks_for(257, 256, 100) == 2 &&
             blocks_for(int64_t(1) << 40, 256, 65536) == 65536, "blocks_for");
  for (int64_t idx = 0; idx < 2 * 3 * 5 * 7; ++idx) {
    const Index4 at = unflatten4(idx, 3, 5, 7);
    EXPECT(((at.i0 * 3 + at.i1) * 5 + at.i2) * 7 + at.i3 == idx && at.i1 < 3 && at.i2 < 5 && at.i3 < 7, "unflatten4(%ld)", idx);
  }
  // A grid-stride loop over more items than the capped grid has threads visits each exactly once.
  const int64_t items = int64_t(kThreads) * (1 << 16) + 12345;
  const int64_t blocks = blocks_for(items, kThreads, 1 << 16), step = blocks * kThreads;
  std::vector<uint8_t> seen(items, 0);
  for (int64_t block = 0; block < blocks; ++block)
    for (int64_t thread = 0; thread < kThreads; ++thread)
      for (int64_t idx = block * kThreads + thread; idx < items; idx += step) ++seen[idx];
  int64_t wrong = 0;
  for (const uint8_t v : seen) wrong += v != 1;
  EXPECT(wrong == 0, "grid-stride loop: %ld items not visited exactly once", wrong);
  // Tile geometry: float4 loads stay 16-byte aligned, and a run's window (its last float4 starts at
  // column c0 + taps of its phase row) stays inside the row; a quarter warp's float4 loads (8 threads
  // of one tile row) are 128 consecutive bytes.
  for (int64_t scale = 1; scale <= 8; ++scale)
    for (int64_t k = 1; k <= 40; k += 3) {
      const DegradeTile t = plan_degrade_tile(k, scale, 16);
      EXPECT(t.pitch % 4 == 0 && t.kernel_floats % 4 == 0 && t.taps % 4 == 0, "tile alignment k=%ld s=%ld", k, scale);
      EXPECT(t.taps * scale >= k && (t.taps - 4) * scale < k, "taps k=%ld s=%ld: %ld", k, scale, t.taps);
      EXPECT(t.width - kRun + t.taps + 4 <= t.pitch && t.real_cols <= t.pitch, "window overrun k=%ld s=%ld", k, scale);
      EXPECT(t.rows == scale * 15 + k && t.threads == 16 * t.width / kRun && t.width / kRun == 8,
             "tile geometry k=%ld s=%ld", k, scale);
    }
}

// The tiled CUDA kernel of degrade, block by block and thread by thread on the host (the noise
// means by a team of threads), against the CPU op; plus the device-side noise check.
void test_degrade_tiles_match_cpu_op() {
  auto op = c10::Dispatcher::singleton().findSchemaOrThrow("realsr_fast::degrade", "").typed<DegradeFn>();
  at::manual_seed(17);
  struct Case { int64_t k, scale, side; at::ScalarType dtype; };
  const Case cases[] = {{1, 1, 8, at::kByte}, {4, 2, 16, at::kFloat}, {9, 3, 8, at::kHalf}, {33, 4, 16, at::kByte}, {13, 3, 16, at::kFloat}};
  for (const Case& cs : cases)
    for (int pad = 0; pad < 4; ++pad) {
      const int64_t height = cs.k + 29, width = cs.k + 23, batch = 2;
      at::Tensor hr = at::rand({batch, 3, height, width});
      hr = cs.dtype == at::kByte ? (hr * 255).round().to(at::kByte) : hr.to(cs.dtype);
      hr = hr.contiguous(at::MemoryFormat::ChannelsLast);
      at::Tensor kernels = at::rand({batch, cs.k, cs.k});
      kernels = kernels / kernels.sum({1, 2}, true);
      const int64_t out_h = (height + cs.scale - 1) / cs.scale, out_w = (width + cs.scale - 1) / cs.scale;
      const at::Tensor bank = (at::rand({3, 3, out_h + 5, out_w + 5}) * 255).round().to(at::kByte);
      const at::Tensor index = at::tensor({2, 0}, at::kLong);
      const at::Tensor offset = at::tensor({1, 4, 5, 0}, at::kLong).reshape({2, 2});
      const at::Tensor want = op.call(hr, kernels, cs.scale, bank, index, offset, kPaddingNames[pad], true, false, std::nullopt);

      DegradeCall call = prepare_degrade(hr, kernels, cs.scale, bank, index, offset, kPaddingNames[pad], true, false, std::nullopt);
      DegradeParams& p = call.params;
      for (int64_t plane = 0; plane < batch * 3; ++plane)
        run_team(5, [&](const HostTeam& team) {
          const double mean = team_noise_mean(team, p, plane / 3, plane % 3);
          if (team.rank() == 0) p.noise_mean[plane] = mean;
        });
      const DegradeTile t = plan_degrade_tile(cs.k, cs.scale, cs.side);
      EXPECT(choose_degrade_tile(p, t.smem_bytes).side == cs.side, "k=%ld s=%ld: the tile chosen for its own size",
             cs.k, cs.scale);
      std::vector<float> smem(t.kernel_floats + t.tile_floats);
      std::vector<int64_t> row_source(t.rows);
      float* kernel = smem.data();
      float* tile = kernel + t.kernel_floats;
      const auto fill = [&](int64_t b, int64_t c, int64_t j0, int cx) {
        const int64_t plane = b * p.hr_strides.n + c * p.hr_strides.c;
        switch (p.hr_type) {
          case Scalar::UInt8:
            return fill_tile_column(p, t, static_cast<const uint8_t*>(p.hr) + plane, row_source.data(), j0, cx, tile);
          case Scalar::Float16:
            return fill_tile_column(p, t, static_cast<const c10::Half*>(p.hr) + plane, row_source.data(), j0, cx, tile);
          default:
            return fill_tile_column(p, t, static_cast<const float*>(p.hr) + plane, row_source.data(), j0, cx, tile);
        }
      };
      for (int64_t plane = 0; plane < batch * 3; ++plane)
        for (int64_t i0 = 0; i0 < out_h; i0 += t.side)
          for (int64_t j0 = 0; j0 < out_w; j0 += t.width) {
            const int64_t b = plane / 3, c = plane % 3;
            std::fill(smem.begin(), smem.end(), NAN);  // a read of an unfilled element shows up
            for (int64_t r = 0; r < t.rows; ++r) row_source[r] = tile_row_source(p, i0, r);
            for (int e = 0; e < t.kernel_floats; ++e) fill_tile_kernel_element(p, t, b, e, kernel);
            for (int cx = 0; cx < cs.scale * t.pitch; ++cx) fill(b, c, j0, cx);
            for (int64_t ti = 0; ti < t.side && i0 + ti < out_h; ++ti)
              for (int c0 = 0; c0 < t.width && j0 + c0 < out_w; c0 += kRun) {
                float blurred[kRun];
                tile_blur_run(t, tile, kernel, cs.k, cs.scale, static_cast<int>(ti), c0, blurred);
                for (int r = 0; r < kRun && j0 + c0 + r < out_w; ++r)
                  store_unit_value(p.out, p.out_strides.at(b, c, i0 + ti, j0 + c0 + r), p.out_type,
                                   checked_noisy_sample(p, blurred[r] / unit_divisor(p.hr_type), b, c, i0 + ti, j0 + c0 + r));
              }
          }
      const double worst = (call.out - want).abs().max().item<double>();
      EXPECT(worst < 2e-6, "tiles k=%ld s=%ld %s: max difference %g", cs.k, cs.scale, kPaddingNames[pad], worst);
    }
  // A noise choice outside the bank poisons its sample instead of reading past the bank.
  DegradeCall call = prepare_degrade(at::rand({1, 3, 8, 8}), at::ones({3, 3}), 2, at::rand({2, 3, 6, 6}),
                                     at::zeros({1}, at::kLong), at::zeros({1, 2}, at::kLong), "symmetric", true, false,
                                     std::nullopt);
  const int64_t good_index = 1, bad_index = 2, bad_offset[2] = {int64_t(1) << 62, 0};
  call.params.noise_mean[0] = 0;
  call.params.noise_index = &good_index;
  EXPECT(noise_choice_in_range(call.params, 0) && !std::isnan(checked_noisy_sample(call.params, 0.5f, 0, 0, 0, 0)), "good choice");
  call.params.noise_index = &bad_index;
  EXPECT(!noise_choice_in_range(call.params, 0) && std::isnan(checked_noisy_sample(call.params, 0.5f, 0, 0, 0, 0)), "index 2 of 2");
  call.params.noise_index = &good_index;
  call.params.noise_offset = bad_offset;
  EXPECT(std::isnan(checked_noisy_sample(call.params, 0.5f, 0, 0, 0, 0)), "offset 2**62");
  run_team(3, [&](const HostTeam& team) { EXPECT(std::isnan(team_noise_mean(team, call.params, 0, 0)), "mean of a bad crop"); });
}

// The block algorithms of the KernelGAN kernels, run by teams of host threads, against the ops.
void test_kernelgan_teams_match_cpu_ops() {
  auto& dispatcher = c10::Dispatcher::singleton();
  auto forward = dispatcher.findSchemaOrThrow("realsr_fast::batchnorm_relu", "").typed<BatchNormReluFn>();
  auto backward = dispatcher.findSchemaOrThrow("realsr_fast::batchnorm_relu_backward", "").typed<BatchNormReluBackwardFn>();
  auto corr = dispatcher.findSchemaOrThrow("realsr_fast::correlation_kernel_grad", "")
                  .typed<at::Tensor(const at::Tensor&, const at::Tensor&, int64_t, int64_t)>();
  at::manual_seed(19);
  for (const auto dtype : {at::kDouble, at::kFloat}) {
    const double tol = dtype == at::kDouble ? 1e-10 : 1e-4;
    const int64_t rows = 4, cols = 45;
    const at::Tensor x = (at::randn({rows, cols}) * 2 + 0.3).to(dtype), weight = at::randn({rows}).to(dtype);
    const at::Tensor bias = at::randn({rows}).to(dtype), grad_y = at::randn({rows, cols}).to(dtype);
    const auto [y, mean, invstd] = forward.call(x, weight, bias, 1e-5);
    const auto [grad_x, grad_weight, grad_bias] = backward.call(grad_y, x, y, mean, invstd, weight);
    const BatchNormReluCall call = prepare_batchnorm_relu(x, weight, bias, 1e-5);
    const BatchNormReluBackwardCall back = prepare_batchnorm_relu_backward(grad_y, x, y, mean, invstd, weight);
    AT_DISPATCH_FLOATING_TYPES(dtype, "test", [&] {
      for (int64_t r = 0; r < rows; ++r) {
        run_team(7, [&](const HostTeam& team) { team_batchnorm_relu_row(team, call.params<scalar_t>(), r); });
        run_team(7, [&](const HostTeam& team) { team_batchnorm_relu_backward_row(team, back.params<scalar_t>(), r); });
      }
    });
    EXPECT(at::allclose(call.y, y, tol, tol) && at::allclose(call.mean, mean, tol, tol) &&
               at::allclose(call.invstd, invstd, tol, tol), "batchnorm_relu team forward");
    EXPECT(at::allclose(back.grad_x, grad_x, tol, tol) && at::allclose(back.grad_weight, grad_weight, tol, tol) &&
               at::allclose(back.grad_bias, grad_bias, tol, tol), "batchnorm_relu team backward");

    const at::Tensor xs = at::randn({3, 2, 29, 25}).to(dtype), gs = at::randn({3, 2, 9, 7}).to(dtype);
    const at::Tensor want = corr.call(xs, gs, 3, 5);
    const CorrelationKernelGradCall cc = prepare_correlation_kernel_grad(xs, gs, 3, 5);
    AT_DISPATCH_FLOATING_TYPES(dtype, "test", [&] {
      for (int64_t tap = 0; tap < 2 * 5 * 5; ++tap)
        run_team(6, [&](const HostTeam& team) { team_correlation_tap(team, cc.params<scalar_t>(), tap); });
    });
    EXPECT(at::allclose(cc.grad_kernel, want, tol * 10, tol * 10), "correlation team: max diff %g",
           (cc.grad_kernel - want).abs().max().item<double>());
  }
}

// Checks got (rows x rows, row-major) against L d L^T, with L (rows x n, rows of `left` of any
// length >= n) and d (n x n, row-major).
template <size_t kWidth>
void expect_two_sided_product(const char* name, const float* got, const double (*left)[kWidth], int rows, int n,
                              const float* d) {
  for (int i = 0; i < rows; ++i)
    for (int j = 0; j < rows; ++j) {
      double want = 0;
      for (int a = 0; a < n; ++a)
        for (int b = 0; b < n; ++b) want += left[i][a] * d[a * n + b] * left[j][b];
      EXPECT(std::abs(got[i * rows + j] - want) <= 1e-4 * (1 + std::abs(want)), "%s[%d][%d] = %g, want %g", name, i,
             j, got[i * rows + j], want);
    }
}

// Variant F's input tile transform on a random window against B^T d B, and its output transform on
// a random tile of products against A^T m A.
template <typename F, size_t kWidth>
void expect_variant_matches(const double (*bt)[kWidth], const double (*at)[kWidth]) {
  constexpr int n = F::kWindow;
  float d[n * n], v[n * n], y[F::kTile * F::kTile];
  const at::Tensor values = at::randn({2, n * n}, at::kDouble);
  for (int k = 0; k < n * n; ++k) d[k] = static_cast<float>(values[0][k].item<double>());
  winograd_input_tile<F>(d, v);
  expect_two_sided_product("V", v, bt, n, n, d);
  for (int k = 0; k < n * n; ++k) d[k] = static_cast<float>(values[1][k].item<double>());
  winograd_output_tile<F>(d, y);
  expect_two_sided_product("Y", y, at, F::kTile, n, d);
}

// The tile transforms of winograd.h on plain floats against B^T d B and A^T m A with the matrices
// written out, on random windows: F(6x6, 3x3) (points 0, 1, -1, 2, -2, 1/2, -1/2, infinity) and
// F(4x4, 3x3) (Lavin & Gray's matrices, points 0, 1, -1, 2, -2, infinity).
void test_winograd_tiles_match_matrices() {
  const double bt6[8][8] = {{1, 0, -5.25, 0, 5.25, 0, -1, 0},        {0, 1, 1, -4.25, -4.25, 1, 1, 0},
                            {0, -1, 1, 4.25, -4.25, -1, 1, 0},       {0, 0.5, 0.25, -2.5, -1.25, 2, 1, 0},
                            {0, -0.5, 0.25, 2.5, -1.25, -2, 1, 0},   {0, 2, 4, -2.5, -5, 0.5, 1, 0},
                            {0, -2, 4, 2.5, -5, -0.5, 1, 0},         {0, -1, 0, 5.25, 0, -5.25, 0, 1}};
  const double points6[7] = {0, 1, -1, 2, -2, 0.5, -0.5};
  double at6[6][8];
  for (int i = 0; i < 6; ++i) {
    for (int j = 0; j < 7; ++j) at6[i][j] = std::pow(points6[j], i);
    at6[i][7] = i == 5 ? 1 : 0;
  }
  const double bt4[6][6] = {{4, 0, -5, 0, 1, 0},  {0, -4, -4, 1, 1, 0}, {0, 4, -4, -1, 1, 0},
                            {0, -2, -1, 2, 1, 0}, {0, 2, -1, -2, 1, 0}, {0, 4, 0, -5, 0, 1}};
  const double at4[4][6] = {{1, 1, 1, 1, 1, 0}, {0, 1, -1, 2, -2, 0}, {0, 1, 1, 4, 4, 0}, {0, 1, -1, 8, -8, 1}};
  at::manual_seed(11);
  expect_variant_matches<WinogradF6>(bt6, at6);
  expect_variant_matches<WinogradF4>(bt4, at4);
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
      {"bound_checks_do_not_overflow", test_bound_checks_do_not_overflow},
      {"launch_geometry", test_launch_geometry},
      {"degrade_tiles_match_cpu_op", test_degrade_tiles_match_cpu_op},
      {"kernelgan_teams_match_cpu_ops", test_kernelgan_teams_match_cpu_ops},
      {"winograd_tiles_match_matrices", test_winograd_tiles_match_matrices},
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
