// CUDA kernels of realsr_fast::patch_stats: the two sliding-window passes of patch_stats.h,
// one thread per column, then one thread per output row.
#include "grid.h"
#include "launchers.h"

namespace realsr_fast {
namespace {

template <typename Acc>
__global__ void column_pass(const __grid_constant__ PatchStatsParams p) {
  REALSR_GRID_STRIDE_LOOP(item, p.batch * p.width) { column_window_sums<Acc>(p, item / p.width, item % p.width); }
}

template <typename Acc>
__global__ void row_pass(const __grid_constant__ PatchStatsParams p) {
  REALSR_GRID_STRIDE_LOOP(item, p.batch * p.out_height) {
    row_window_stats<Acc>(p, item / p.out_height, item % p.out_height);
  }
}

template <typename Acc>
cudaError_t launch_passes(const PatchStatsParams& p, cudaStream_t stream) {
  column_pass<Acc><<<grid_for(p.batch * p.width), kThreads, 0, stream>>>(p);
  row_pass<Acc><<<grid_for(p.batch * p.out_height), kThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_patch_stats(const PatchStatsParams& p, bool integer, cudaStream_t stream) {
  return integer ? launch_passes<int64_t>(p, stream) : launch_passes<double>(p, stream);
}

}  // namespace realsr_fast
