// CPU implementation of realsr_fast::batchnorm_relu and its backward: the row functions of
// batchnorm_relu.h over blocks of rows in parallel, compiled per instruction set.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <tuple>

#include "../op_args.h"
#include "cpu_dispatch.h"

namespace realsr_fast {
namespace {

// Rows per parallel task: a KernelGAN row is a few hundred values, so a task is a few microseconds.
constexpr int64_t kRowGrain = 16;

template <typename T>
REALSR_ALWAYS_INLINE void forward_rows_impl(const BatchNormReluParams<T>& p, int64_t begin, int64_t end) {
  for (int64_t r = begin; r < end; ++r) batchnorm_relu_row(p, r);
}
REALSR_ISA_CLONES(forward_rows, forward_rows_impl)

template <typename T>
REALSR_ALWAYS_INLINE void backward_rows_impl(const BatchNormReluBackwardParams<T>& p, int64_t begin, int64_t end) {
  for (int64_t r = begin; r < end; ++r) batchnorm_relu_backward_row(p, r);
}
REALSR_ISA_CLONES(backward_rows, backward_rows_impl)

std::tuple<at::Tensor, at::Tensor, at::Tensor> batchnorm_relu_cpu(const at::Tensor& x, const at::Tensor& weight,
                                                                  const at::Tensor& bias, double eps) {
  const BatchNormReluCall call = prepare_batchnorm_relu(x, weight, bias, eps);
  AT_DISPATCH_FLOATING_TYPES(call.x.scalar_type(), "batchnorm_relu", [&] {
    const auto p = call.params<scalar_t>();
    at::parallel_for(0, p.rows, kRowGrain, [&](int64_t begin, int64_t end) { forward_rows(p, begin, end); });
  });
  return {call.y, call.mean, call.invstd};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> batchnorm_relu_backward_cpu(
    const at::Tensor& grad_y, const at::Tensor& x, const at::Tensor& y, const at::Tensor& mean,
    const at::Tensor& invstd, const at::Tensor& weight) {
  const BatchNormReluBackwardCall call = prepare_batchnorm_relu_backward(grad_y, x, y, mean, invstd, weight);
  AT_DISPATCH_FLOATING_TYPES(call.x.scalar_type(), "batchnorm_relu_backward",
                             [&] {
                               const auto p = call.params<scalar_t>();
                               at::parallel_for(0, p.rows, kRowGrain,
                                                [&](int64_t begin, int64_t end) { backward_rows(p, begin, end); });
                             });
  return {call.grad_x, call.grad_weight, call.grad_bias};
}

}  // namespace

TORCH_LIBRARY_IMPL(realsr_fast, CPU, m) {
  m.impl("batchnorm_relu", &batchnorm_relu_cpu);
  m.impl("batchnorm_relu_backward", &batchnorm_relu_backward_cpu);
}

}  // namespace realsr_fast
