// Launch geometry shared by the 1-D CUDA kernels: grid-stride loops over a flat index.
// The geometry itself (blocks_for, kThreads) lives in launch_plan.h, where the C++ tests check it.
#pragma once

#include <cstdint>

#include "../launch_plan.h"

namespace realsr_fast {

inline unsigned int grid_for(int64_t items) {
  return static_cast<unsigned int>(blocks_for(items, kThreads, 1 << 16));
}

#define REALSR_GRID_STRIDE_LOOP(index, total)                                       \
  for (int64_t index = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; \
       index < (total); index += static_cast<int64_t>(blockDim.x) * gridDim.x)

}  // namespace realsr_fast
