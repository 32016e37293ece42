// Launch geometry shared by the CUDA kernels: 1-D grid-stride loops over a flat index.
#pragma once

#include <algorithm>
#include <cstdint>

namespace realsr_fast {

constexpr int kThreads = 256;

inline unsigned int grid_for(int64_t items) {
  const int64_t blocks = (items + kThreads - 1) / kThreads;
  return static_cast<unsigned int>(std::max<int64_t>(1, std::min<int64_t>(blocks, 1 << 16)));
}

#define REALSR_GRID_STRIDE_LOOP(index, total)                                       \
  for (int64_t index = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; \
       index < (total); index += static_cast<int64_t>(blockDim.x) * gridDim.x)

}  // namespace realsr_fast
