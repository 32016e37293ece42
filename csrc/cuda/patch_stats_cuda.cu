// CUDA kernels of realsr_fast::patch_stats, the two sliding-window passes of patch_stats.h laid
// out for a GPU (launch_plan.h): pass 1 one thread per (image, chunk of output rows, column),
// consecutive threads on consecutive columns; pass 2 one warp per output, consecutive lanes on
// consecutive column sums. Both spread over all SMs and read memory coalesced.
#include "block_team.cuh"
#include "grid.h"
#include "launchers.h"

namespace realsr_fast {
namespace {

constexpr int64_t kColumnThreadsTarget = 1 << 18;  // enough threads to fill an H100 several times

template <typename Acc>
__global__ void column_pass(const __grid_constant__ PatchStatsParams p, int64_t chunk_rows) {
  const int64_t chunks = p.out_height / chunk_rows + (p.out_height % chunk_rows != 0);
  REALSR_GRID_STRIDE_LOOP(item, p.batch * chunks * p.width) {
    const Index4 at = unflatten4(item, 1, chunks, p.width);  // (b, 0, chunk, x)
    const int64_t oi0 = at.i2 * chunk_rows;
    const int64_t oi1 = oi0 + chunk_rows < p.out_height ? oi0 + chunk_rows : p.out_height;
    column_chunk_sums<Acc>(p, at.i0, at.i3, oi0, oi1);
  }
}

template <typename Acc>
__global__ void row_pass(const __grid_constant__ PatchStatsParams p) {
  const int64_t warps_per_block = blockDim.x / kWarpSize;
  const int64_t lane = threadIdx.x % kWarpSize;
  const int64_t outputs = p.batch * p.out_height * p.out_width;
  for (int64_t out = blockIdx.x * warps_per_block + threadIdx.x / kWarpSize; out < outputs;
       out += gridDim.x * warps_per_block) {  // uniform per warp: the shuffles see all 32 lanes
    const Index4 at = unflatten4(out, 1, p.out_height, p.out_width);  // (b, 0, oi, oj)
    Acc s, q;
    patch_row_partial<Acc>(p, at.i0, at.i2, at.i3, lane, kWarpSize, s, q);
    s = warp_sum(s);
    q = warp_sum(q);
    if (lane == 0) store_patch_stats<Acc>(p, out, s, q);
  }
}

template <typename Acc>
cudaError_t launch_passes(const PatchStatsParams& p, cudaStream_t stream) {
  const int64_t chunk_rows = column_chunk_rows(p, kColumnThreadsTarget);
  const int64_t chunks = p.out_height / chunk_rows + (p.out_height % chunk_rows != 0);
  column_pass<Acc><<<grid_for(p.batch * chunks * p.width), kThreads, 0, stream>>>(p, chunk_rows);
  const int64_t outputs = p.batch * p.out_height * p.out_width;
  row_pass<Acc><<<grid_for(outputs * kWarpSize), kThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_patch_stats(const PatchStatsParams& p, bool integer, cudaStream_t stream) {
  return integer ? launch_passes<int64_t>(p, stream) : launch_passes<double>(p, stream);
}

}  // namespace realsr_fast
