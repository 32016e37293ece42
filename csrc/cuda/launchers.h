// Kernel launchers of the CUDA path: plain C++ signatures, so the .cu files need no ATen headers
// (they compile in seconds) and ops_cuda.cpp does the torch side.
#pragma once

#include <cuda_runtime_api.h>

#include "../degrade.h"
#include "../patch_stats.h"

namespace realsr_fast {

// Runs degrade on `stream`; p.noise_mean is scratch the launcher fills when p.bank is set.
cudaError_t launch_degrade(const DegradeParams& p, cudaStream_t stream);

// Runs both patch_stats passes on `stream`; `integer` selects the exact uint8 (int64) path.
cudaError_t launch_patch_stats(const PatchStatsParams& p, bool integer, cudaStream_t stream);

}  // namespace realsr_fast
