// Launch glue of the CUDA kernels as plain host/device functions: geometry, index decomposition,
// per-thread work partitions and block-cooperative algorithms. The kernels in cuda/ are thin shells
// around these, and the C++ tests run them on the host (a "team" of std::threads stands in for a
// thread block), so this part of the GPU path is checked without a GPU.
//
// A Team is what a block algorithm needs from its threads: rank() in [0, size()), and sum(v),
// which every member calls with its partial value at the same point and which returns the total
// to all of them (on the GPU: warp shuffles plus one shared-memory exchange, cuda/block_team.cuh).
#pragma once

#include "batchnorm_relu.h"
#include "common.h"
#include "correlation_grad.h"
#include "degrade.h"
#include "patch_stats.h"

// A host/device template whose Team may be device-only: tells nvcc not to check the host variant.
#if defined(__CUDACC__)
#define REALSR_TEAM_TEMPLATE _Pragma("nv_exec_check_disable")
#else
#define REALSR_TEAM_TEMPLATE
#endif

namespace realsr_fast {

constexpr int kThreads = 256;  // threads per block of the 1-D kernels
constexpr int kWarpSize = 32;
constexpr int64_t kMaxGridX = 2147483647;  // gridDim.x limit
constexpr int64_t kMaxGridYZ = 65535;      // gridDim.y and gridDim.z limit

// Blocks for `items` work items at `per_block` items per block, at least 1, at most `limit`
// (grid-stride loops cover the rest).
HOST_DEVICE int64_t blocks_for(int64_t items, int64_t per_block, int64_t limit) {
  const int64_t blocks = items / per_block + (items % per_block != 0);
  return blocks < 1 ? 1 : (blocks > limit ? limit : blocks);
}

// (i0, i1, i2, i3) of flat index `idx` in a row-major (d0, d1, d2, d3) array (d0 is implied).
struct Index4 {
  int64_t i0, i1, i2, i3;
};
HOST_DEVICE Index4 unflatten4(int64_t idx, int64_t d1, int64_t d2, int64_t d3) {
  Index4 r;
  r.i3 = idx % d3;
  idx /= d3;
  r.i2 = idx % d2;
  idx /= d2;
  r.i1 = idx % d1;
  r.i0 = idx / d1;
  return r;
}

// The sum over i = first, first + step, ... < n of term(i): one team member's share of a sum.
template <typename T, typename Term>
HOST_DEVICE T strided_sum(int64_t first, int64_t step, int64_t n, const Term& term) {
  T acc = T(0);
  for (int64_t i = first; i < n; i += step) acc += term(i);
  return acc;
}

// --- degrade: one block per (output tile, plane) -----------------------------------------------
//
// The block copies the HR window its side x width outputs read (s(side-1)+k rows, border extension
// applied) and the sample's kernel into shared memory once, so each HR pixel is read from global
// memory about once per block instead of k^2 / s^2 times. The window is stored de-interleaved by
// column phase (as the CPU path does): phase ph holds columns ph, ph+s, ph+2s..., so along a phase
// row the taps of the strided correlation are consecutive. Each thread computes a run of kRun
// adjacent outputs of one row: output c0 + r at phase tap m reads phase column c0 + r + m, so one
// value loaded from shared memory feeds up to kRun multiply-adds (a sliding window in registers),
// and values and kernel taps are loaded four at a time (float4). Shared-memory traffic per
// multiply-add falls from two loads to about a third of one: the tile no longer waits on the
// shared-memory pipe but on the FMA units.
constexpr int kRun = 4;             // outputs per thread, adjacent along a row
constexpr int64_t kTileWidth = 32;  // outputs per tile row: 8 threads, so a quarter warp's float4 loads
                                    // are 128 consecutive bytes (no bank conflicts)
static_assert(kRun <= 4 && kTileWidth % kRun == 0, "a run reads at most the 8 columns of cur and next");

struct DegradeTile {
  int64_t side;        // output rows per tile
  int64_t width;       // output columns per tile (kTileWidth)
  int64_t threads;     // side * width / kRun
  int64_t taps;        // kernel taps stored per phase row: ceil(k / s) rounded up to a multiple of 4
  int64_t rows;        // HR rows the tile reads: s (side - 1) + k
  int64_t real_cols;   // columns per phase row that outputs can weight: width + (k - 1) / s
  int64_t pitch;       // columns stored per phase row: width + taps (the window's float4 overrun), zeros
                       // beyond real_cols; a multiple of 4
  int64_t kernel_floats;  // k * s * taps: the kernel by (row, phase, tap), zero-padded; stored first
  int64_t tile_floats;    // rows * s * pitch, after the kernel
  int64_t smem_bytes;     // kernel and tile floats, then `rows` int64 row offsets (tile_row_source)
};

HOST_DEVICE int64_t round_up4(int64_t n) { return (n + 3) / 4 * 4; }

HOST_DEVICE DegradeTile plan_degrade_tile(int64_t ksize, int64_t scale, int64_t side) {
  DegradeTile t;
  t.side = side;
  t.width = kTileWidth;
  t.threads = side * kTileWidth / kRun;
  t.taps = round_up4((ksize + scale - 1) / scale);
  t.rows = scale * (side - 1) + ksize;
  t.real_cols = kTileWidth + (ksize - 1) / scale;
  t.pitch = kTileWidth + t.taps;
  t.kernel_floats = ksize * scale * t.taps;
  t.tile_floats = t.rows * scale * t.pitch;
  t.smem_bytes = static_cast<int64_t>(sizeof(float)) * (t.kernel_floats + t.tile_floats) +
                 static_cast<int64_t>(sizeof(int64_t)) * t.rows;  // both float counts are multiples of 4
  return t;
}

// The largest tile (16 or 8 output rows) whose shared memory fits `smem_limit` bytes (the device's
// opt-in limit per block) and whose grid fits CUDA's limits, or a tile with side 0: use the direct
// kernel (degrade_sample per thread).
HOST_DEVICE DegradeTile choose_degrade_tile(const DegradeParams& p, int64_t smem_limit) {
  for (int64_t side = 16; side >= 8; side /= 2) {
    const DegradeTile t = plan_degrade_tile(p.ksize, p.scale, side);
    if (t.smem_bytes <= smem_limit && blocks_for(p.out_height, side, kMaxGridYZ + 1) <= kMaxGridYZ) return t;
  }
  DegradeTile none = plan_degrade_tile(p.ksize, p.scale, 1);
  none.side = 0;
  return none;
}

// Fills element e (of t.kernel_floats) of sample b's kernel in tile order: row u, phase ph, tap m
// holds K[u][ph + s m], 0 where ph + s m >= k. (32-bit index arithmetic: a 64-bit division is a
// long instruction sequence on a GPU.)
HOST_DEVICE void fill_tile_kernel_element(const DegradeParams& p, const DegradeTile& t, int64_t b, int e,
                                          float* kernel) {
  const int scale = static_cast<int>(p.scale), taps = static_cast<int>(t.taps), ksize = static_cast<int>(p.ksize);
  const int per_row = scale * taps;
  const int u = e / per_row, ph = (e % per_row) / taps, m = e % taps;
  const int v = ph + scale * m;
  kernel[e] = v < ksize ? p.kernels[b * p.kernel_batch_stride + u * ksize + v] : 0.0f;
}

// Element offset of tile row r's HR row (border extension applied) in a plane, or -1 for a zero
// row. The same for every plane, so a block computes its t.rows values once.
HOST_DEVICE int64_t tile_row_source(const DegradeParams& p, int64_t i0, int64_t r) {
  const int64_t y = map_coordinate(p.scale * i0 - p.ksize / 2 + r, p.height, p.padding);
  return y < 0 ? -1 : y * p.hr_strides.h;
}

// Fills HR column cx (of s * t.pitch) of the tile whose first output column is j0, every tile row,
// from plane `img` with `row_source` from tile_row_source: raw stored values, 0 outside a
// zero-padded border and beyond t.real_cols. Column cx is phase cx % s, phase column cx / s.
// Threads of a block take consecutive columns, so each row's loads are coalesced.
template <typename T>
HOST_DEVICE void fill_tile_column(const DegradeParams& p, const DegradeTile& t, const T* img, const int64_t* row_source,
                                  int64_t j0, int cx, float* tile) {
  const int scale = static_cast<int>(p.scale), pitch = static_cast<int>(t.pitch);
  const int m = cx / scale;
  const int64_t x = m < t.real_cols ? map_coordinate(p.scale * j0 - p.ksize / 2 + cx, p.width, p.padding) : -1;
  const int64_t column = x * p.hr_strides.w;
  float* dst = tile + (cx % scale) * pitch + m;
  const int row_step = scale * pitch, rows = static_cast<int>(t.rows);
  // Eight loads issued before their stores: a load's latency is hidden behind the next seven rather
  // than waited out row by row (the compiler cannot move a global load past a shared store itself).
  constexpr int kLoadsInFlight = 8;
  for (int r0 = 0; r0 < rows; r0 += kLoadsInFlight) {
    float v[kLoadsInFlight];
    for (int q = 0; q < kLoadsInFlight; ++q) {
      const int64_t row = r0 + q < rows ? row_source[r0 + q] : -1;
      v[q] = (x < 0 || row < 0) ? 0.0f : static_cast<float>(img[row + column]);
    }
    for (int q = 0; q < kLoadsInFlight && r0 + q < rows; ++q) dst[(r0 + q) * row_step] = v[q];
  }
}

// dst[0..3] = src[0..3], one 16-byte load on the device (src 16-byte aligned).
HOST_DEVICE void load4(const float* src, float* dst) {
#if defined(__CUDA_ARCH__)
  const float4 v = *reinterpret_cast<const float4*>(src);
  dst[0] = v.x;
  dst[1] = v.y;
  dst[2] = v.z;
  dst[3] = v.w;
#else
  for (int q = 0; q < 4; ++q) dst[q] = src[q];
#endif
}

// The blur sums (raw stored units) of tile outputs (ti, c0 + r), r < kRun, from a filled tile and
// kernel; c0 is a multiple of kRun. Walks each phase row four taps at a time: `cur` and `next` hold
// phase columns c0 + m .. c0 + m + 7, and output r at tap m + q reads column c0 + r + m + q.
HOST_DEVICE void tile_blur_run(const DegradeTile& t, const float* tile, const float* kernel, int ksize, int scale,
                               int ti, int c0, float* acc) {
  const int pitch = static_cast<int>(t.pitch), taps = static_cast<int>(t.taps);
  for (int r = 0; r < kRun; ++r) acc[r] = 0.0f;
  for (int u = 0; u < ksize; ++u) {
    const float* line = tile + (scale * ti + u) * scale * pitch + c0;
    const float* krow = kernel + u * scale * taps;
    for (int ph = 0; ph < scale && ph < ksize; ++ph) {
      const float* x = line + ph * pitch;
      const float* w = krow + ph * taps;
      const int n = static_cast<int>(round_up4((ksize - ph + scale - 1) / scale));
      float cur[4], next[4], kv[4];
      load4(x, cur);
      for (int m = 0; m < n; m += 4) {
        load4(x + m + 4, next);
        load4(w + m, kv);
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
        for (int q = 0; q < 4; ++q)
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
          for (int r = 0; r < kRun; ++r) acc[r] += kv[q] * (q + r < 4 ? cur[q + r] : next[q + r - 4]);
        for (int q = 0; q < 4; ++q) cur[q] = next[q];
      }
    }
  }
}

// noisy_sample, but NaN (and no bank read) when sample b's noise choice leaves the bank: the
// CUDA kernels cannot raise, so they assert on the device and poison the output.
HOST_DEVICE float checked_noisy_sample(const DegradeParams& p, float blurred, int64_t b, int64_t c, int64_t i,
                                       int64_t j) {
  if (p.bank != nullptr && !noise_choice_in_range(p, b)) return NAN;
  return noisy_sample(p, blurred, b, c, i, j);
}

// The crop mean of the noise of plane (b, c), computed by a team (NaN for an out-of-range choice).
REALSR_TEAM_TEMPLATE
template <typename Team>
HOST_DEVICE double team_noise_mean(const Team& team, const DegradeParams& p, int64_t b, int64_t c) {
  const bool ok = noise_choice_in_range(p, b);
  const int64_t count = p.out_height * p.out_width;
  const double partial = !ok ? 0.0 : strided_sum<double>(team.rank(), team.size(), count, [&](int64_t idx) {
    return static_cast<double>(noise_crop_value(p, b, c, idx / p.out_width, idx % p.out_width));
  });
  const double total = team.sum(partial);
  return ok ? total / static_cast<double>(count) : NAN;
}

// --- batchnorm_relu: one team per row -----------------------------------------------------------
// Members take columns rank, rank + size, ...: adjacent threads read adjacent values (coalesced).

REALSR_TEAM_TEMPLATE
template <typename Team, typename T>
HOST_DEVICE void team_batchnorm_relu_row(const Team& team, const BatchNormReluParams<T>& p, int64_t r) {
  const T* x = p.x + r * p.cols;
  T* y = p.y + r * p.cols;
  const int64_t first = team.rank(), step = team.size();
  const T n = static_cast<T>(p.cols);
  const T mean = team.sum(strided_sum<T>(first, step, p.cols, [&](int64_t i) { return x[i]; })) / n;
  const T var =
      team.sum(strided_sum<T>(first, step, p.cols, [&](int64_t i) { return (x[i] - mean) * (x[i] - mean); })) / n;
  const T invstd = static_cast<T>(1.0 / sqrt(static_cast<double>(var) + p.eps));
  const T scale = p.weight[r] * invstd, shift = p.bias[r] - mean * scale;
  for (int64_t i = first; i < p.cols; i += step) {
    const T v = x[i] * scale + shift;
    y[i] = v > T(0) ? v : T(0);
  }
  if (first == 0) {
    p.mean[r] = mean;
    p.invstd[r] = invstd;
  }
}

REALSR_TEAM_TEMPLATE
template <typename Team, typename T>
HOST_DEVICE void team_batchnorm_relu_backward_row(const Team& team, const BatchNormReluBackwardParams<T>& p,
                                                  int64_t r) {
  const int64_t offset = r * p.cols, first = team.rank(), step = team.size();
  const T* dy = p.grad_y + offset;
  const T* x = p.x + offset;
  const T* y = p.y + offset;
  const T mean = p.mean[r], invstd = p.invstd[r];
  const auto g = [&](int64_t i) { return dy[i] * static_cast<T>(y[i] > T(0)); };  // see batchnorm_relu.h
  const T sum_g = team.sum(strided_sum<T>(first, step, p.cols, g));
  const T sum_g_xhat = team.sum(strided_sum<T>(first, step, p.cols, [&](int64_t i) { return g(i) * (x[i] - mean); })) * invstd;
  const T n = static_cast<T>(p.cols);
  const T scale = p.weight[r] * invstd;
  const T mean_g = sum_g / n, xhat_factor = sum_g_xhat / n * invstd;
  T* dx = p.grad_x + offset;
  for (int64_t i = first; i < p.cols; i += step) dx[i] = scale * (g(i) - mean_g - (x[i] - mean) * xhat_factor);
  if (first == 0) {
    p.grad_weight[r] = sum_g_xhat;
    p.grad_bias[r] = sum_g;
  }
}

// --- correlation_kernel_grad: one team per kernel tap (n, u, v) ----------------------------------
// The team reduces over all B * h * w output pixels; adjacent members take adjacent pixels of a
// row, so the gradient loads are coalesced and x is read at the correlation's stride.

REALSR_TEAM_TEMPLATE
template <typename Team, typename T>
HOST_DEVICE void team_correlation_tap(const Team& team, const CorrelationKernelGradParams<T>& p, int64_t tap) {
  const int64_t n = tap / (p.size * p.size), u = (tap / p.size) % p.size, v = tap % p.size;
  const int64_t pixels = p.batch * p.out_height * p.out_width;
  const T partial = strided_sum<T>(team.rank(), team.size(), pixels, [&](int64_t q) {
    const Index4 at = unflatten4(q, 1, p.out_height, p.out_width);  // (b, 0, i, j)
    const int64_t plane = at.i0 * p.images + n;
    return p.grad[(plane * p.out_height + at.i2) * p.out_width + at.i3] *
           p.x[(plane * p.height + p.stride * at.i2 + u) * p.width + p.stride * at.i3 + v];
  });
  const T total = team.sum(partial);
  if (team.rank() == 0) p.grad_kernel[tap] = total;
}

// --- patch_stats --------------------------------------------------------------------------------

// Pass 1 runs one thread per (image, chunk of output rows, column): consecutive threads take
// consecutive columns (coalesced), and the image's output rows are split into enough chunks to
// give the GPU about `target_threads` threads. Each thread slides its window over its chunk.
HOST_DEVICE int64_t column_chunk_rows(const PatchStatsParams& p, int64_t target_threads) {
  const int64_t columns = p.batch * p.width;
  int64_t chunks = target_threads / (columns < 1 ? 1 : columns);
  chunks = chunks < 1 ? 1 : (chunks > p.out_height ? p.out_height : chunks);
  return p.out_height / chunks + (p.out_height % chunks != 0);
}

// Pass 1 for column x of image b, output rows [oi0, oi1): the sums of grey and grey^2 over rows
// [oi * stride, oi * stride + patch) of each.
template <typename Acc>
HOST_DEVICE void column_chunk_sums(const PatchStatsParams& p, int64_t b, int64_t x, int64_t oi0, int64_t oi1) {
  Acc s = 0, q = 0;
  const int64_t y0 = oi0 * p.stride, y1 = (oi1 - 1) * p.stride + p.patch;
  for (int64_t y = y0; y < y1; ++y) {
    const Acc g = grey_value<Acc>(p, b, y, x);
    s += g;
    q += g * g;
    if (y - y0 >= p.patch) {
      const Acc old = grey_value<Acc>(p, b, y - p.patch, x);
      s -= old;
      q -= old * old;
    }
    const int64_t oi = window_ending_at(y, p.patch, p.stride, p.out_height);
    if (oi >= oi0 && oi < oi1) store_column_sums<Acc>(p, b, oi, x, s, q);
  }
}

// Pass 2 runs one warp per output: lane l sums the column sums at columns oj * stride + l,
// + 32, ... of the patch (consecutive lanes read consecutive values), then the warp adds up.
template <typename Acc>
HOST_DEVICE void patch_row_partial(const PatchStatsParams& p, int64_t b, int64_t oi, int64_t oj, int64_t lane,
                                   int64_t lanes, Acc& s, Acc& q) {
  const int64_t row = (b * p.out_height + oi) * p.width + oj * p.stride;
  const Acc* col_sum = static_cast<const Acc*>(p.col_sum) + row;
  const Acc* col_sq = static_cast<const Acc*>(p.col_sq) + row;
  s = strided_sum<Acc>(lane, lanes, p.patch, [&](int64_t t) { return col_sum[t]; });
  q = strided_sum<Acc>(lane, lanes, p.patch, [&](int64_t t) { return col_sq[t]; });
}

}  // namespace realsr_fast
