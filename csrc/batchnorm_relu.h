// The maths of realsr_fast::batchnorm_relu (training-mode BatchNorm followed by ReLU, forward and
// backward), one row at a time, shared by the CPU and CUDA paths.
//
// Each row of x is one BatchNorm channel: all the values its batch statistics are taken over
// (KernelGAN's discriminator: one image's channel at every position of its map). Sums run over
// kLanes interleaved partial sums, so a CPU compiler turns them into vector adds (a single running
// sum would wait on the latency of every add) and the result does not depend on the ISA.
#pragma once

#include <cstring>
#include <type_traits>

#include "common.h"

namespace realsr_fast {

constexpr int kLanes = 16;

template <typename T>
struct BatchNormReluParams {
  const T* x;       // (rows, cols), contiguous
  const T* weight;  // (rows,) BatchNorm scale
  const T* bias;    // (rows,) BatchNorm shift
  double eps;
  int64_t rows, cols;
  T* y;       // (rows, cols): relu(weight * (x - mean) * invstd + bias)
  T* mean;    // (rows,)
  T* invstd;  // (rows,) 1 / sqrt(population variance + eps)
};

template <typename T>
struct BatchNormReluBackwardParams {
  const T* grad_y;  // (rows, cols)
  const T* x;       // (rows, cols) the forward's input
  const T* y;       // (rows, cols) the forward's output (its sign is ReLU's mask)
  const T* mean;    // (rows,)
  const T* invstd;  // (rows,)
  const T* weight;  // (rows,)
  int64_t rows, cols;
  T* grad_x;       // (rows, cols)
  T* grad_weight;  // (rows,)
  T* grad_bias;    // (rows,)
};

// sum over i < n of term(i), in kLanes partial sums combined pairwise.
template <typename T, typename Term>
HOST_DEVICE T lane_sum(int64_t n, const Term& term) {
  T lanes[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l) lanes[l] += term(i + l);
  for (int l = 0; l < kLanes && i + l < n; ++l) lanes[l] += term(i + l);
  for (int width = kLanes / 2; width > 0; width /= 2)
    for (int l = 0; l < width; ++l) lanes[l] += lanes[l + width];
  return lanes[0];
}

// `value` where `y > 0`, else 0, without a branch. On the host as a bit mask: GCC 12 miscompiles
// `y > 0 ? value : 0` when it vectorizes lane_sum for AVX2/AVX-512 (wrong sums for doubles), and
// turns `value * (y > 0)` into a branch that mispredicts on half of ReLU's random signs (25x slower).
template <typename T>
HOST_DEVICE T where_positive(T value, T y) {
#if defined(__CUDA_ARCH__)
  return y > T(0) ? value : T(0);
#else
  using Bits = std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>;
  static_assert(sizeof(T) == sizeof(Bits), "where_positive takes float or double");
  Bits bits;
  std::memcpy(&bits, &value, sizeof bits);
  bits &= Bits(0) - static_cast<Bits>(y > T(0));
  std::memcpy(&value, &bits, sizeof bits);
  return value;
#endif
}

// Forward of row r: mean, then the variance around it (two passes: no E[x^2] - E[x]^2
// cancellation), then y.
template <typename T>
HOST_DEVICE void batchnorm_relu_row(const BatchNormReluParams<T>& p, int64_t r) {
  const T* x = p.x + r * p.cols;
  T* y = p.y + r * p.cols;
  const T n = static_cast<T>(p.cols);
  const T mean = lane_sum<T>(p.cols, [&](int64_t i) { return x[i]; }) / n;
  const T var = lane_sum<T>(p.cols, [&](int64_t i) { return (x[i] - mean) * (x[i] - mean); }) / n;
  const T invstd = static_cast<T>(1.0 / sqrt(static_cast<double>(var) + p.eps));
  const T scale = p.weight[r] * invstd, shift = p.bias[r] - mean * scale;
  for (int64_t i = 0; i < p.cols; ++i) {
    const T v = x[i] * scale + shift;
    y[i] = v > T(0) ? v : T(0);
  }
  p.mean[r] = mean;
  p.invstd[r] = invstd;
}

// Backward of row r. With g = grad_y where y > 0 (else 0) and xhat = (x - mean) * invstd:
// grad_bias = sum g, grad_weight = sum g xhat,
// grad_x = weight * invstd * (g - grad_bias / n - xhat * grad_weight / n).
template <typename T>
HOST_DEVICE void batchnorm_relu_backward_row(const BatchNormReluBackwardParams<T>& p, int64_t r) {
  const int64_t offset = r * p.cols;
  const T* dy = p.grad_y + offset;
  const T* x = p.x + offset;
  const T* y = p.y + offset;
  const T mean = p.mean[r], invstd = p.invstd[r];
  const auto g = [&](int64_t i) { return where_positive(dy[i], y[i]); };
  const T sum_g = lane_sum<T>(p.cols, g);
  const T sum_g_xhat = lane_sum<T>(p.cols, [&](int64_t i) { return g(i) * (x[i] - mean); }) * invstd;
  const T n = static_cast<T>(p.cols);
  const T scale = p.weight[r] * invstd;
  const T mean_g = sum_g / n, xhat_factor = sum_g_xhat / n * invstd;
  T* dx = p.grad_x + offset;
  for (int64_t i = 0; i < p.cols; ++i) dx[i] = scale * (g(i) - mean_g - (x[i] - mean) * xhat_factor);
  p.grad_weight[r] = sum_g_xhat;
  p.grad_bias[r] = sum_g;
}

}  // namespace realsr_fast
