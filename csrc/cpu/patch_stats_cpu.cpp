// CPU implementation of realsr_fast::patch_stats: the two sliding-window passes of patch_stats.h,
// parallel over columns, then over output rows.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <tuple>

#include "../op_args.h"

namespace realsr_fast {
namespace {

template <typename Acc>
void patch_stats_passes(const PatchStatsParams& p) {
  at::parallel_for(0, p.batch * p.width, 64, [&](int64_t begin, int64_t end) {
    for (int64_t item = begin; item < end; ++item)
      column_window_sums<Acc>(p, item / p.width, item % p.width);
  });
  at::parallel_for(0, p.batch * p.out_height, 1, [&](int64_t begin, int64_t end) {
    for (int64_t item = begin; item < end; ++item)
      row_window_stats<Acc>(p, item / p.out_height, item % p.out_height);
  });
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
