// Kernel launchers of the CUDA path: plain C++ signatures, so the .cu files need no ATen headers
// (they compile in seconds) and ops_cuda.cpp does the torch side.
#pragma once

#include <cuda_runtime_api.h>

#include "../batchnorm_relu.h"
#include "../correlation_grad.h"
#include "../degrade.h"
#include "../patch_stats.h"

namespace realsr_fast {

// Runs degrade on `stream`; p.noise_mean is scratch the launcher fills when p.bank is set.
cudaError_t launch_degrade(const DegradeParams& p, cudaStream_t stream);

// Runs both patch_stats passes on `stream`; `integer` selects the exact uint8 (int64) path.
cudaError_t launch_patch_stats(const PatchStatsParams& p, bool integer, cudaStream_t stream);

// The KernelGAN ops on `stream`, for T = float and double.
template <typename T>
cudaError_t launch_batchnorm_relu(const BatchNormReluParams<T>& p, cudaStream_t stream);
template <typename T>
cudaError_t launch_batchnorm_relu_backward(const BatchNormReluBackwardParams<T>& p, cudaStream_t stream);
template <typename T>
cudaError_t launch_correlation_kernel_grad(const CorrelationKernelGradParams<T>& p, cudaStream_t stream);

}  // namespace realsr_fast
