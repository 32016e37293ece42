// The maths of realsr_fast::correlation_kernel_grad, shared by the CPU and CUDA paths: the
// gradient of a strided "valid" correlation with respect to its kernel,
//   grad_kernel[n, u, v] = sum over b, i, j of grad[b, n, i, j] * x[b, n, s*i + u, s*j + v],
// for out[b, n, i, j] = sum over u, v of kernel[n, u, v] * x[b, n, s*i + u, s*j + v]
// (KernelGAN's collapsed generator: the colours are b, the images n, s = 2).
#pragma once

#include "common.h"

namespace realsr_fast {

// Largest kernel side: a row of the gradient is accumulated in a local array of this size.
constexpr int64_t kMaxCorrelationKernel = 32;

// Whether `count` windows of `size` samples at `stride` (reach stride * (count - 1) + size) fit
// in `extent` samples, without computing the reach (it overflows int64 for absurd arguments).
// count, stride and size are >= 1.
HOST_DEVICE bool strided_reach_fits(int64_t count, int64_t stride, int64_t size, int64_t extent) {
  return size <= extent && (count - 1) <= (extent - size) / stride;
}

template <typename T>
struct CorrelationKernelGradParams {
  const T* x;     // (batch, images, height, width), contiguous
  const T* grad;  // (batch, images, out_height, out_width), contiguous
  int64_t batch, images, height, width, out_height, out_width;
  int64_t stride, size;
  T* grad_kernel;  // (images, size, size)
};

// Row u of image n's kernel gradient, all `size` columns at once: each gradient value meets a
// contiguous run of x, so the innermost loop is a short vector multiply-add.
template <typename T>
HOST_DEVICE void correlation_kernel_grad_row(const CorrelationKernelGradParams<T>& p, int64_t n, int64_t u) {
  T acc[kMaxCorrelationKernel] = {};
  for (int64_t b = 0; b < p.batch; ++b) {
    const int64_t plane = b * p.images + n;
    for (int64_t i = 0; i < p.out_height; ++i) {
      const T* x_row = p.x + (plane * p.height + p.stride * i + u) * p.width;
      const T* grad_row = p.grad + (plane * p.out_height + i) * p.out_width;
      for (int64_t j = 0; j < p.out_width; ++j) {
        const T g = grad_row[j];
        const T* x_run = x_row + p.stride * j;
        for (int64_t v = 0; v < p.size; ++v) acc[v] += g * x_run[v];
      }
    }
  }
  T* out = p.grad_kernel + (n * p.size + u) * p.size;
  for (int64_t v = 0; v < p.size; ++v) out[v] = acc[v];
}

}  // namespace realsr_fast
