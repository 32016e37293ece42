// CPU implementation of realsr_fast::patch_stats: the two sliding-window passes of patch_stats.h.
// Pass 1 walks each block of columns row by row (rows read in memory order), pass 2 runs per
// output row. Both passes run in the instruction set cpu_dispatch.h selects.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>
#include <vector>

#include "../op_args.h"
#include "cpu_dispatch.h"

namespace realsr_fast {
namespace {

constexpr int64_t kColumnBlock = 256;

// Pass 1 for columns [x0, x0 + width) of image b, row by row. The greys of the last `patch` rows
// stay in a ring buffer, so each pixel's grey is computed once.
template <typename Acc>
REALSR_ALWAYS_INLINE void column_block_sums(const PatchStatsParams& p, int64_t b, int64_t x0, int64_t width,
                                            std::vector<Acc>& ring, std::vector<Acc>& s, std::vector<Acc>& q) {
  ring.resize(p.patch * width);
  s.assign(width, 0);
  q.assign(width, 0);
  for (int64_t y = 0; y < rows_needed(p); ++y) {
    Acc* slot = ring.data() + (y % p.patch) * width;
    const bool full = y >= p.patch;
    for (int64_t t = 0; t < width; ++t) {
      const Acc g = grey_value<Acc>(p, b, y, x0 + t);
      const Acc old = full ? slot[t] : Acc(0);
      slot[t] = g;
      s[t] += g - old;
      q[t] += g * g - old * old;
    }
    const int64_t oi = window_ending_at(y, p.patch, p.stride, p.out_height);
    if (oi >= 0)
      for (int64_t t = 0; t < width; ++t) store_column_sums<Acc>(p, b, oi, x0 + t, s[t], q[t]);
  }
}

// Selects the accumulator type of the cloned passes (a deducible argument: see cpu_dispatch.h).
template <typename Acc>
struct AccTag {};

// Pass 1 for work items [begin, end) = (image, block of columns).
template <typename Acc>
REALSR_ALWAYS_INLINE void column_blocks_impl(const PatchStatsParams& p, AccTag<Acc>, int64_t begin, int64_t end) {
  const int64_t blocks = (p.width + kColumnBlock - 1) / kColumnBlock;
  std::vector<Acc> ring, s, q;
  for (int64_t item = begin; item < end; ++item) {
    const int64_t b = item / blocks, x0 = (item % blocks) * kColumnBlock;
    column_block_sums<Acc>(p, b, x0, std::min(kColumnBlock, p.width - x0), ring, s, q);
  }
}
REALSR_ISA_CLONES(column_blocks, column_blocks_impl)

// Pass 2 for work items [begin, end) = (image, output row).
template <typename Acc>
REALSR_ALWAYS_INLINE void output_rows_impl(const PatchStatsParams& p, AccTag<Acc>, int64_t begin, int64_t end) {
  for (int64_t item = begin; item < end; ++item) row_window_stats<Acc>(p, item / p.out_height, item % p.out_height);
}
REALSR_ISA_CLONES(output_rows, output_rows_impl)

// The parallel loops call the clones from inside their lambdas, so the hot loops run in the
// selected instruction set (a lambda body itself is compiled for the baseline).
template <typename Acc>
void patch_stats_passes(const PatchStatsParams& p) {
  const int64_t blocks = (p.width + kColumnBlock - 1) / kColumnBlock;
  at::parallel_for(0, p.batch * blocks, 1,
                   [&](int64_t begin, int64_t end) { column_blocks(p, AccTag<Acc>{}, begin, end); });
  at::parallel_for(0, p.batch * p.out_height, 1,
                   [&](int64_t begin, int64_t end) { output_rows(p, AccTag<Acc>{}, begin, end); });
}

std::tuple<at::Tensor, at::Tensor> patch_stats_cpu(const at::Tensor& img, int64_t patch,
                                                   int64_t stride) {
  PatchStatsCall call = prepare_patch_stats(img, patch, stride);
  if (call.mean.numel() > 0) {
    if (call.integer)
      patch_stats_passes<int64_t>(call.params);
    else
      patch_stats_passes<double>(call.params);
  }
  return {call.mean, call.var};
}

}  // namespace

TORCH_LIBRARY_IMPL(realsr_fast, CPU, m) { m.impl("patch_stats", &patch_stats_cpu); }

}  // namespace realsr_fast
