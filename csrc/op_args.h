// Argument checking and parameter packing for the ops, shared by the CPU and CUDA registrations.
// Every check a user can trip raises a ValueError (TORCH_CHECK_VALUE) naming the argument.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>
#include <string_view>
#include <vector>

#include "batchnorm_relu.h"
#include "correlation_grad.h"
#include "degrade.h"
#include "patch_stats.h"

namespace realsr_fast {

// A validated degrade call: raw parameters plus the tensors that own the memory they point to.
struct DegradeCall {
  DegradeParams params;
  at::Tensor out;         // (B, C, Ho, Wo), same memory format as hr
  at::Tensor noise_mean;  // (B * C) float64 on hr's device, filled by the backend; undefined without noise
  std::vector<at::Tensor> keep_alive;
};

DegradeCall prepare_degrade(const at::Tensor& hr, const at::Tensor& kernels, int64_t scale,
                            const std::optional<at::Tensor>& noise_bank,
                            const std::optional<at::Tensor>& noise_index,
                            const std::optional<at::Tensor>& noise_offset,
                            std::string_view padding, bool clamp, bool quantize,
                            std::optional<at::ScalarType> out_dtype);

// A validated patch_stats call; `integer` selects the exact uint8 path (int64 accumulators).
struct PatchStatsCall {
  PatchStatsParams params;
  at::Tensor mean, var;  // (B, nh, nw) float32
  at::Tensor col_sum, col_sq;  // scratch (B, nh, W)
  bool integer;
};

PatchStatsCall prepare_patch_stats(const at::Tensor& img, int64_t patch, int64_t stride);

// A validated batchnorm_relu call: contiguous inputs of one floating type and the outputs.
struct BatchNormReluCall {
  at::Tensor x, weight, bias;  // (rows, cols), (rows,), (rows,)
  double eps;
  at::Tensor y, mean, invstd;  // (rows, cols), (rows,), (rows,)

  template <typename T>
  BatchNormReluParams<T> params() const {
    return {x.const_data_ptr<T>(), weight.const_data_ptr<T>(), bias.const_data_ptr<T>(), eps,
            x.size(0), x.size(1), y.mutable_data_ptr<T>(), mean.mutable_data_ptr<T>(),
            invstd.mutable_data_ptr<T>()};
  }
};

BatchNormReluCall prepare_batchnorm_relu(const at::Tensor& x, const at::Tensor& weight,
                                         const at::Tensor& bias, double eps);

// A validated batchnorm_relu_backward call.
struct BatchNormReluBackwardCall {
  at::Tensor grad_y, x, y, mean, invstd, weight;
  at::Tensor grad_x, grad_weight, grad_bias;

  template <typename T>
  BatchNormReluBackwardParams<T> params() const {
    return {grad_y.const_data_ptr<T>(), x.const_data_ptr<T>(), y.const_data_ptr<T>(),
            mean.const_data_ptr<T>(), invstd.const_data_ptr<T>(), weight.const_data_ptr<T>(),
            x.size(0), x.size(1), grad_x.mutable_data_ptr<T>(), grad_weight.mutable_data_ptr<T>(),
            grad_bias.mutable_data_ptr<T>()};
  }
};

BatchNormReluBackwardCall prepare_batchnorm_relu_backward(const at::Tensor& grad_y, const at::Tensor& x,
                                                          const at::Tensor& y, const at::Tensor& mean,
                                                          const at::Tensor& invstd, const at::Tensor& weight);

// A validated correlation_kernel_grad call.
struct CorrelationKernelGradCall {
  at::Tensor x, grad;  // contiguous (B, N, H, W), (B, N, h, w)
  int64_t stride, size;
  at::Tensor grad_kernel;  // (N, size, size)

  template <typename T>
  CorrelationKernelGradParams<T> params() const {
    return {x.const_data_ptr<T>(), grad.const_data_ptr<T>(), x.size(0), x.size(1), x.size(2), x.size(3),
            grad.size(2), grad.size(3), stride, size, grad_kernel.mutable_data_ptr<T>()};
  }
};

CorrelationKernelGradCall prepare_correlation_kernel_grad(const at::Tensor& x, const at::Tensor& grad,
                                                          int64_t stride, int64_t size);

}  // namespace realsr_fast
