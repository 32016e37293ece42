// The GPU side of launch_plan.h's Team: the threads of one block (BlockTeam) or of one warp
// (warp_sum). sum() must be reached by every thread of the block with uniform control flow.
#pragma once

#include <cstdint>

#include "../launch_plan.h"

namespace realsr_fast {

template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
  return v;  // complete in lane 0
}

// A block of up to 1024 threads (a multiple of 32). `scratch` holds 32 values of the widest T summed.
struct BlockTeam {
  void* scratch;

  __device__ __forceinline__ int64_t rank() const { return threadIdx.x; }
  __device__ __forceinline__ int64_t size() const { return blockDim.x; }

  // Warp sums, then warp 0 adds the per-warp results; every thread gets the total.
  template <typename T>
  __device__ T sum(T v) const {
    T* partial = static_cast<T*>(scratch);
    const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
    const int warps = (blockDim.x + kWarpSize - 1) / kWarpSize;
    v = warp_sum(v);
    __syncthreads();  // scratch may still be read by the previous sum
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    if (warp == 0) {
      T w = lane < warps ? partial[lane] : T(0);
      w = warp_sum(w);
      if (lane == 0) partial[0] = w;
    }
    __syncthreads();
    return partial[0];
  }
};

// Shared scratch for BlockTeam: 32 doubles (enough for float, double and int64).
#define REALSR_BLOCK_TEAM(name)                    \
  __shared__ double name##_scratch[kWarpSize];     \
  const BlockTeam name { name##_scratch }

}  // namespace realsr_fast
