// Argument checking and parameter packing for the ops, shared by the CPU and CUDA registrations.
// Every check a user can trip raises a ValueError (TORCH_CHECK_VALUE) naming the argument.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>
#include <string_view>
#include <vector>

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

}  // namespace realsr_fast
