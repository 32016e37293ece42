// CUDA registrations: validate and pack the arguments (op_args.cpp), then launch on the current
// stream of the input's device.
#include <ATen/ATen.h>
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
  const c10::cuda::CUDAGuard guard(hr.device());
  DegradeCall call = prepare_degrade(hr, kernels, scale, noise_bank, noise_index, noise_offset,
                                     padding, clamp, quantize, out_dtype);
  if (call.out.numel() > 0)
    C10_CUDA_CHECK(launch_degrade(call.params, c10::cuda::getCurrentCUDAStream()));
  return call.out;
}

std::tuple<at::Tensor, at::Tensor> patch_stats_cuda(const at::Tensor& img, int64_t patch,
                                                    int64_t stride) {
  const c10::cuda::CUDAGuard guard(img.device());
  PatchStatsCall call = prepare_patch_stats(img, patch, stride);
  if (call.mean.numel() > 0)
    C10_CUDA_CHECK(launch_patch_stats(call.params, call.integer, c10::cuda::getCurrentCUDAStream()));
  return {call.mean, call.var};
}

}  // namespace

TORCH_LIBRARY_IMPL(realsr_fast, CUDA, m) {
  m.impl("degrade", &degrade_cuda);
  m.impl("patch_stats", &patch_stats_cuda);
}

}  // namespace realsr_fast
