// CUDA registrations: validate and pack the arguments (op_args.cpp), then launch on the current
// stream of the input's device. The device guard comes after validation: built first, it would
// reject a CPU `hr` with an obscure error before the same-device check could explain it.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <tuple>

#include "../op_args.h"
#include "launchers.h"

namespace realsr_fast {
namespace {

at::Tensor degrade_cuda(const at::Tensor& hr, const at::Tensor& kernels, int64_t scale,
                        const std::optional<at::Tensor>& noise_bank,
                        const std::optional<at::Tensor>& noise_index,
                        const std::optional<at::Tensor>& noise_offset, c10::string_view padding,
                        bool clamp, bool quantize, std::optional<at::ScalarType> out_dtype) {
  DegradeCall call = prepare_degrade(hr, kernels, scale, noise_bank, noise_index, noise_offset,
                                     padding, clamp, quantize, out_dtype);
  const c10::cuda::CUDAGuard guard(hr.device());
  if (call.out.numel() > 0)
    C10_CUDA_CHECK(launch_degrade(call.params, c10::cuda::getCurrentCUDAStream()));
  return call.out;
}

std::tuple<at::Tensor, at::Tensor> patch_stats_cuda(const at::Tensor& img, int64_t patch,
                                                    int64_t stride) {
  PatchStatsCall call = prepare_patch_stats(img, patch, stride);
  const c10::cuda::CUDAGuard guard(img.device());
  if (call.mean.numel() > 0)
    C10_CUDA_CHECK(launch_patch_stats(call.params, call.integer, c10::cuda::getCurrentCUDAStream()));
  return {call.mean, call.var};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> batchnorm_relu_cuda(const at::Tensor& x, const at::Tensor& weight,
                                                                   const at::Tensor& bias, double eps) {
  const BatchNormReluCall call = prepare_batchnorm_relu(x, weight, bias, eps);
  const c10::cuda::CUDAGuard guard(x.device());
  AT_DISPATCH_FLOATING_TYPES(call.x.scalar_type(), "batchnorm_relu", [&] {
    C10_CUDA_CHECK(launch_batchnorm_relu(call.params<scalar_t>(), c10::cuda::getCurrentCUDAStream()));
  });
  return {call.y, call.mean, call.invstd};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> batchnorm_relu_backward_cuda(
    const at::Tensor& grad_y, const at::Tensor& x, const at::Tensor& y, const at::Tensor& mean,
    const at::Tensor& invstd, const at::Tensor& weight) {
  const BatchNormReluBackwardCall call = prepare_batchnorm_relu_backward(grad_y, x, y, mean, invstd, weight);
  const c10::cuda::CUDAGuard guard(x.device());
  AT_DISPATCH_FLOATING_TYPES(call.x.scalar_type(), "batchnorm_relu_backward", [&] {
    C10_CUDA_CHECK(launch_batchnorm_relu_backward(call.params<scalar_t>(), c10::cuda::getCurrentCUDAStream()));
  });
  return {call.grad_x, call.grad_weight, call.grad_bias};
}

at::Tensor correlation_kernel_grad_cuda(const at::Tensor& x, const at::Tensor& grad, int64_t stride, int64_t size) {
  const CorrelationKernelGradCall call = prepare_correlation_kernel_grad(x, grad, stride, size);
  const c10::cuda::CUDAGuard guard(x.device());
  AT_DISPATCH_FLOATING_TYPES(call.x.scalar_type(), "correlation_kernel_grad", [&] {
    C10_CUDA_CHECK(launch_correlation_kernel_grad(call.params<scalar_t>(), c10::cuda::getCurrentCUDAStream()));
  });
  return call.grad_kernel;
}

}  // namespace

TORCH_LIBRARY_IMPL(realsr_fast, CUDA, m) {
  m.impl("degrade", &degrade_cuda);
  m.impl("patch_stats", &patch_stats_cuda);
  m.impl("batchnorm_relu", &batchnorm_relu_cuda);
  m.impl("batchnorm_relu_backward", &batchnorm_relu_backward_cuda);
  m.impl("correlation_kernel_grad", &correlation_kernel_grad_cuda);
}

}  // namespace realsr_fast
