// The maths of the patch-statistics op (noise mining), shared by the CPU and CUDA paths.
//
// Grey mean and population variance (0..255 scale) of every patch x patch window at a stride, by
// two sliding-window passes: column sums over `patch` rows at each output row, then row sums over
// `patch` columns. The cost per pixel is O(1) whatever the patch size. uint8 images accumulate
// exact integers (PIL's 'L' grey is an integer), so their statistics are exact up to the final
// float rounding; float images accumulate in double around a shift of mid-grey, which keeps the
// E[x^2] - E[x]^2 cancellation harmless for bright, flat patches.
#pragma once

#include <type_traits>

#include "common.h"

namespace realsr_fast {

// Largest patch side: keeps patch^2 * sum(grey^2) inside int64 for uint8 images.
constexpr int64_t kMaxPatch = 2048;
// Shift applied to float greys before accumulating (0..255 scale).
constexpr double kGreyShift = 128.0;

struct PatchStatsParams {
  const void* img;  // (B, C, H, W), C = 1 or 3
  Scalar type;
  Strides4 strides;
  int64_t batch, channels, height, width;
  int64_t patch, stride;
  int64_t out_height, out_width;  // (H - patch) / stride + 1, same for W
  void* col_sum;  // scratch (B, out_height, W): int64 for uint8 images, double otherwise
  void* col_sq;
  float* mean;  // (B, out_height, out_width), contiguous
  float* var;
};

// Grey value of pixel (y, x): PIL 'L' for 3-channel uint8 (an integer), 0.299/0.587/0.114 for float
// images in [0, 1] scaled to 0..255 and shifted by kGreyShift; single channels as they are.
template <typename Acc>
HOST_DEVICE Acc grey_value(const PatchStatsParams& p, int64_t b, int64_t y, int64_t x) {
  const int64_t base = p.strides.at(b, 0, y, x);
  if constexpr (std::is_integral<Acc>::value) {
    const uint8_t* img = static_cast<const uint8_t*>(p.img);
    if (p.channels == 1) return img[base];
    const int64_t r = img[base], g = img[base + p.strides.c], bl = img[base + 2 * p.strides.c];
    return (19595 * r + 38470 * g + 7471 * bl + 32768) >> 16;
  } else {
    if (p.channels == 1) return 255.0 * load_as_float(p.img, base, p.type) - kGreyShift;
    const double r = load_as_float(p.img, base, p.type);
    const double g = load_as_float(p.img, base + p.strides.c, p.type);
    const double bl = load_as_float(p.img, base + 2 * p.strides.c, p.type);
    return 255.0 * (0.299 * r + 0.587 * g + 0.114 * bl) - kGreyShift;
  }
}

// Index of the output whose window of `patch` samples ends at sample t of an axis with `count`
// outputs, or -1 when no window ends there.
HOST_DEVICE int64_t window_ending_at(int64_t t, int64_t patch, int64_t stride, int64_t count) {
  const int64_t start = t - (patch - 1);
  if (start < 0 || start % stride != 0 || start / stride >= count) return -1;
  return start / stride;
}

// Pass 1 output: the column sums of output row oi, column x.
template <typename Acc>
HOST_DEVICE void store_column_sums(const PatchStatsParams& p, int64_t b, int64_t oi, int64_t x, Acc s, Acc q) {
  const int64_t index = (b * p.out_height + oi) * p.width + x;
  static_cast<Acc*>(p.col_sum)[index] = s;
  static_cast<Acc*>(p.col_sq)[index] = q;
}

// Rows pass 1 has to visit: up to the end of the last output row's window.
HOST_DEVICE int64_t rows_needed(const PatchStatsParams& p) { return (p.out_height - 1) * p.stride + p.patch; }

// Mean and population variance of a patch from its sums, written to output (b, oi, oj).
template <typename Acc>
HOST_DEVICE void store_patch_stats(const PatchStatsParams& p, int64_t index, Acc s, Acc q) {
  const int64_t n = p.patch * p.patch;
  if constexpr (std::is_integral<Acc>::value) {
    // n * q - s^2 is exact in int64 for patch <= kMaxPatch.
    p.mean[index] = static_cast<float>(static_cast<double>(s) / static_cast<double>(n));
    p.var[index] = static_cast<float>(static_cast<double>(n * q - s * s) /
                                      (static_cast<double>(n) * static_cast<double>(n)));
  } else {
    const double m = s / static_cast<double>(n);
    p.mean[index] = static_cast<float>(m + kGreyShift);
    p.var[index] = static_cast<float>(fmax(q / static_cast<double>(n) - m * m, 0.0));
  }
}

// Pass 2 for output row oi of image b: slides a `patch`-wide window along the column sums.
template <typename Acc>
HOST_DEVICE void row_window_stats(const PatchStatsParams& p, int64_t b, int64_t oi) {
  const Acc* col_sum = static_cast<const Acc*>(p.col_sum) + (b * p.out_height + oi) * p.width;
  const Acc* col_sq = static_cast<const Acc*>(p.col_sq) + (b * p.out_height + oi) * p.width;
  const int64_t out_row = (b * p.out_height + oi) * p.out_width;
  Acc s = 0, q = 0;
  const int64_t last = (p.out_width - 1) * p.stride + p.patch;
  for (int64_t x = 0; x < last; ++x) {
    s += col_sum[x];
    q += col_sq[x];
    if (x >= p.patch) {
      s -= col_sum[x - p.patch];
      q -= col_sq[x - p.patch];
    }
    const int64_t oj = window_ending_at(x, p.patch, p.stride, p.out_width);
    if (oj >= 0) store_patch_stats<Acc>(p, out_row + oj, s, q);
  }
}

}  // namespace realsr_fast
