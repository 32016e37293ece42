// The maths of the fused degradation op, shared by the CPU and CUDA paths.
//
//   out[b,c,i,j] = sum_{u,v} K_b[u,v] * HR~[b, c, s*i + u - k/2, s*j + v - k/2] + N[b,c,i,j]
//   N[b,c,i,j]   = bank[idx_b, c, oy_b + i, ox_b + j] - mean of that channel over the (Ho, Wo) crop
//
// then clamp to [0, 1], optionally quantise to 1/255 steps, and store.
#pragma once

#include "common.h"

namespace realsr_fast {

// How HR is extended past its border (HR~ above).
enum class Padding : int32_t {
  Symmetric = 0,  // d c b a | a b c d | d c b a   (scipy.ndimage 'reflect', what RealSR used)
  Reflect = 1,    // d c b | a b c d | c b a       (torch 'reflect')
  Replicate = 2,  // a a a | a b c d | d d d
  Zeros = 3,
};

// Source index of coordinate i of the extended axis of length n, or -1 for a zero sample.
// Symmetric and reflect are periodic, so any distance past the border is well defined.
HOST_DEVICE int64_t map_coordinate(int64_t i, int64_t n, Padding padding) {
  if (i >= 0 && i < n) return i;
  switch (padding) {
    case Padding::Symmetric: {
      const int64_t period = 2 * n;
      int64_t m = i % period;
      if (m < 0) m += period;
      return m < n ? m : period - 1 - m;
    }
    case Padding::Reflect: {
      if (n == 1) return 0;
      const int64_t period = 2 * (n - 1);
      int64_t m = i % period;
      if (m < 0) m += period;
      return m < n ? m : period - m;
    }
    case Padding::Replicate:
      return i < 0 ? 0 : n - 1;
    default:
      return -1;
  }
}

// Everything one call needs, as raw pointers and element strides (any memory layout).
struct DegradeParams {
  const void* hr;  // (B, C, H, W)
  Scalar hr_type;
  Strides4 hr_strides;
  int64_t batch, channels, height, width;
  int64_t out_height, out_width;  // ceil(H / s), ceil(W / s)

  const float* kernels;         // contiguous (B, k, k), or (k, k) shared by all samples
  int64_t kernel_batch_stride;  // k * k, or 0 when shared
  int64_t ksize;
  int64_t scale;
  Padding padding;

  const void* bank;  // (N, C, Ph, Pw) or nullptr for no noise
  Scalar bank_type;
  Strides4 bank_strides;
  int64_t bank_count, bank_height, bank_width;  // N, Ph, Pw
  const int64_t* noise_index;   // (B,)
  const int64_t* noise_offset;  // (B, 2) = (oy, ox), contiguous
  double* noise_mean;           // (B * C) per-channel crop means, filled before the main pass

  void* out;  // (B, C, Ho, Wo)
  Scalar out_type;
  Strides4 out_strides;
  bool clamp;
  bool quantize;
};

// Whether a length-n window starting at o lies in [0, size), for any int64 o (no overflow: o + n
// could wrap for absurd offsets and pass a plain `o + n <= size`). n and size are >= 0.
HOST_DEVICE bool crop_fits(int64_t o, int64_t n, int64_t size) { return o >= 0 && n <= size && o <= size - n; }

// Whether sample b's noise choice (bank index, crop offset) stays inside the bank. The CPU path
// checks it on the host before any read; the CUDA kernels check it on the device (no host sync).
HOST_DEVICE bool noise_choice_in_range(const DegradeParams& p, int64_t b) {
  const int64_t n = p.noise_index[b];
  return n >= 0 && n < p.bank_count && crop_fits(p.noise_offset[2 * b], p.out_height, p.bank_height) &&
         crop_fits(p.noise_offset[2 * b + 1], p.out_width, p.bank_width);
}

// Noise bank value at output position (i, j) of sample b, channel c, in [0, 1] units.
HOST_DEVICE float noise_crop_value(const DegradeParams& p, int64_t b, int64_t c, int64_t i,
                                   int64_t j) {
  const int64_t n = p.noise_index[b];
  const int64_t y = p.noise_offset[2 * b] + i;
  const int64_t x = p.noise_offset[2 * b + 1] + j;
  return load_as_float(p.bank, p.bank_strides.at(n, c, y, x), p.bank_type) /
         unit_divisor(p.bank_type);
}

// Clamp, then optionally round to the nearest 1/255 (half to even).
HOST_DEVICE float finish_sample(float v, bool clamp, bool quantize) {
  if (clamp) v = fminf(fmaxf(v, 0.0f), 1.0f);
  if (quantize) v = round_half_even(v * 255.0f) / 255.0f;
  return v;
}

// Adds the zero-mean noise and finishes one output sample; `blurred` is in [0, 1] units.
HOST_DEVICE float noisy_sample(const DegradeParams& p, float blurred, int64_t b, int64_t c,
                               int64_t i, int64_t j) {
  float v = blurred;
  if (p.bank != nullptr) {
    v += noise_crop_value(p, b, c, i, j) - static_cast<float>(p.noise_mean[b * p.channels + c]);
  }
  return finish_sample(v, p.clamp, p.quantize);
}

// The blur + stride sum of one output sample, read straight from HR (what each CUDA thread runs).
// Windows inside the image skip the border mapping. Returns [0, 1] units.
template <typename T>
HOST_DEVICE float blur_sample(const DegradeParams& p, int64_t b, int64_t c, int64_t i, int64_t j) {
  const T* img = static_cast<const T*>(p.hr) + b * p.hr_strides.n + c * p.hr_strides.c;
  const float* kernel = p.kernels + b * p.kernel_batch_stride;
  const int64_t k = p.ksize;
  const int64_t y0 = p.scale * i - k / 2;
  const int64_t x0 = p.scale * j - k / 2;
  const int64_t sh = p.hr_strides.h, sw = p.hr_strides.w;
  float acc = 0.0f;
  if (y0 >= 0 && x0 >= 0 && y0 + k <= p.height && x0 + k <= p.width) {
    for (int64_t u = 0; u < k; ++u) {
      const T* row = img + (y0 + u) * sh + x0 * sw;
      const float* krow = kernel + u * k;
      for (int64_t v = 0; v < k; ++v) acc += krow[v] * static_cast<float>(row[v * sw]);
    }
  } else {
    for (int64_t u = 0; u < k; ++u) {
      const int64_t ry = map_coordinate(y0 + u, p.height, p.padding);
      if (ry < 0) continue;
      const float* krow = kernel + u * k;
      for (int64_t v = 0; v < k; ++v) {
        const int64_t rx = map_coordinate(x0 + v, p.width, p.padding);
        if (rx < 0) continue;
        acc += krow[v] * static_cast<float>(img[ry * sh + rx * sw]);
      }
    }
  }
  return acc / unit_divisor(p.hr_type);
}

// One whole output sample by the direct route: blur, noise, clamp/quantise.
template <typename T>
HOST_DEVICE float degrade_sample(const DegradeParams& p, int64_t b, int64_t c, int64_t i,
                                 int64_t j) {
  return noisy_sample(p, blur_sample<T>(p, b, c, i, j), b, c, i, j);
}

}  // namespace realsr_fast
