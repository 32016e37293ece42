// CPU implementation of realsr_fast::degrade.
//
// Per work item (one channel plane, a band of output rows) the rows of the extended image that the
// band needs are copied once into a float buffer, de-interleaved into `scale` phases
// (phase ph holds columns ph, ph + s, ph + 2s, ...). Then HR~[s*i + u, s*j + v] for consecutive j is
// a contiguous run of phase (v % s), and the strided correlation becomes k*k contiguous
// multiply-adds over a chunk of outputs kept in registers: no gathers, no horizontal sums.
// Border handling, noise, clamping and stores are the shared HOST_DEVICE functions in degrade.h.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "../op_args.h"
#include "cpu_dispatch.h"

namespace realsr_fast {
namespace {

constexpr int64_t kChunk = 32;  // outputs accumulated together in registers

// Geometry of one call's phase buffers.
struct PhaseLayout {
  // Columns per phase row: Wo rounded up to whole chunks (the last chunk reads zeros past the
  // end instead of taking a slower path) plus the (k - 1) / s columns the taps reach beyond.
  int64_t pitch;
  std::vector<int64_t> col_src;  // (s, pitch): source column of each buffer column, -1 = zero
};

PhaseLayout make_layout(const DegradeParams& p) {
  PhaseLayout layout;
  const int64_t chunks = (p.out_width + kChunk - 1) / kChunk;
  const int64_t used = p.out_width + (p.ksize - 1) / p.scale;
  layout.pitch = chunks * kChunk + (p.ksize - 1) / p.scale;
  layout.col_src.resize(p.scale * layout.pitch);
  for (int64_t ph = 0; ph < p.scale; ++ph)
    for (int64_t m = 0; m < layout.pitch; ++m)
      layout.col_src[ph * layout.pitch + m] =
          m < used ? map_coordinate(p.scale * m + ph - p.ksize / 2, p.width, p.padding) : -1;
  return layout;
}

// Copies extended rows [row0, row0 + rows) of plane (b, c) into `buf`, phase-major:
// buf[(ph * rows + r) * pitch + m] = HR~[row0 + r, s*m + ph] (raw stored values).
template <typename T>
void fill_phases(const DegradeParams& p, const PhaseLayout& layout, int64_t b, int64_t c,
                 int64_t row0, int64_t rows, float* buf) {
  const T* img = static_cast<const T*>(p.hr) + b * p.hr_strides.n + c * p.hr_strides.c;
  const int64_t pw = layout.pitch;
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t sy = map_coordinate(row0 + r - p.ksize / 2, p.height, p.padding);
    for (int64_t ph = 0; ph < p.scale; ++ph) {
      float* dst = buf + (ph * rows + r) * pw;
      const int64_t* src_col = layout.col_src.data() + ph * pw;
      if (sy < 0) {
        std::fill(dst, dst + pw, 0.0f);
        continue;
      }
      const T* row = img + sy * p.hr_strides.h;
      for (int64_t m = 0; m < pw; ++m)
        dst[m] = src_col[m] < 0 ? 0.0f : static_cast<float>(row[src_col[m] * p.hr_strides.w]);
    }
  }
}

// Eight floats as one value (GCC/clang vector extension); aligned(4) allows unaligned loads.
// Written out because the auto-vectoriser keeps the accumulators in memory here.
typedef float Float8 __attribute__((vector_size(32), aligned(4)));
constexpr int64_t kVectors = kChunk / 8;

// blurred[jj] = sum_{u,v} K[u,v] * band[u][tap_shift[v] + jj] for the kChunk outputs of a chunk.
// Rows u and u + 1 feed separate accumulators, so 2 * kVectors multiply-add chains run at once.
REALSR_ALWAYS_INLINE void blur_chunk(const float* __restrict kernel, int64_t k,
                                     const int64_t* __restrict tap_shift, const float* __restrict band,
                                     int64_t pitch, float* __restrict blurred) {
  Float8 even[kVectors] = {}, odd[kVectors] = {};
  int64_t u = 0;
  for (; u + 1 < k; u += 2) {
    const float* line0 = band + u * pitch;
    const float* line1 = line0 + pitch;
    for (int64_t v = 0; v < k; ++v) {
      const float w0 = kernel[u * k + v], w1 = kernel[(u + 1) * k + v];
      const Float8* src0 = reinterpret_cast<const Float8*>(line0 + tap_shift[v]);
      const Float8* src1 = reinterpret_cast<const Float8*>(line1 + tap_shift[v]);
      for (int64_t q = 0; q < kVectors; ++q) {
        even[q] += w0 * src0[q];
        odd[q] += w1 * src1[q];
      }
    }
  }
  if (u < k) {  // odd k: the last row
    const float* line = band + u * pitch;
    for (int64_t v = 0; v < k; ++v) {
      const float w = kernel[u * k + v];
      const Float8* src = reinterpret_cast<const Float8*>(line + tap_shift[v]);
      for (int64_t q = 0; q < kVectors; ++q) even[q] += w * src[q];
    }
  }
  for (int64_t q = 0; q < kVectors; ++q) {
    const Float8 sum = even[q] + odd[q];
    for (int64_t t = 0; t < 8; ++t) blurred[8 * q + t] = sum[t];
  }
}

// Output rows [i0, i1) of plane (b, c) from its filled phase buffer (whose first row is s * i0);
// tap_shift[v] is the buffer offset of kernel column v: phase (v % s), v / s columns in.
REALSR_ALWAYS_INLINE
void blur_rows_impl(const DegradeParams& p, const PhaseLayout& layout, const int64_t* tap_shift,
                    int64_t b, int64_t c, int64_t i0, int64_t i1, const float* buf) {
  const float* kernel = p.kernels + b * p.kernel_batch_stride;
  const float divisor = unit_divisor(p.hr_type);
  const int64_t pitch = layout.pitch;
  float blurred[kChunk];
  for (int64_t i = i0; i < i1; ++i) {
    const float* band = buf + p.scale * (i - i0) * pitch;
    for (int64_t j0 = 0; j0 < p.out_width; j0 += kChunk) {
      blur_chunk(kernel, p.ksize, tap_shift, band + j0, pitch, blurred);
      const int64_t width = std::min(kChunk, p.out_width - j0);
      for (int64_t jj = 0; jj < width; ++jj) {
        const float v = noisy_sample(p, blurred[jj] / divisor, b, c, i, j0 + jj);
        store_unit_value(p.out, p.out_strides.at(b, c, i, j0 + jj), p.out_type, v);
      }
    }
  }
}
REALSR_ISA_CLONES(blur_rows, blur_rows_impl)

void fill_noise_means(const DegradeParams& p) {
  double* means = p.noise_mean;
  at::parallel_for(0, p.batch * p.channels, 1, [&](int64_t begin, int64_t end) {
    for (int64_t plane = begin; plane < end; ++plane) {
      const int64_t b = plane / p.channels, c = plane % p.channels;
      double sum = 0.0;
      for (int64_t i = 0; i < p.out_height; ++i)
        for (int64_t j = 0; j < p.out_width; ++j) sum += noise_crop_value(p, b, c, i, j);
      means[plane] = sum / static_cast<double>(p.out_height * p.out_width);
    }
  });
}

template <typename T>
void degrade_planes(const DegradeParams& p) {
  const PhaseLayout layout = make_layout(p);
  const int64_t planes = p.batch * p.channels;
  // Bands of output rows: enough work items to keep every thread busy, each as tall as possible
  // (every band re-reads k - s rows of its neighbour).
  const int64_t wanted_items = 4 * at::get_num_threads();
  const int64_t bands_per_plane = std::max<int64_t>(1, std::min(p.out_height, wanted_items / planes));
  const int64_t band_rows = (p.out_height + bands_per_plane - 1) / bands_per_plane;
  const int64_t bands = (p.out_height + band_rows - 1) / band_rows;
  const int64_t max_rows = p.scale * (band_rows - 1) + p.ksize;

  at::parallel_for(0, planes * bands, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> buf(p.scale * max_rows * layout.pitch);
    std::vector<int64_t> tap_shift(p.ksize);
    for (int64_t item = begin; item < end; ++item) {
      const int64_t plane = item / bands, band = item % bands;
      const int64_t b = plane / p.channels, c = plane % p.channels;
      const int64_t i0 = band * band_rows, i1 = std::min(p.out_height, i0 + band_rows);
      const int64_t rows = p.scale * (i1 - i0 - 1) + p.ksize;
      for (int64_t v = 0; v < p.ksize; ++v)
        tap_shift[v] = (v % p.scale) * rows * layout.pitch + v / p.scale;
      fill_phases<T>(p, layout, b, c, p.scale * i0, rows, buf.data());
      blur_rows(p, layout, tap_shift.data(), b, c, i0, i1, buf.data());
    }
  });
}

at::Tensor degrade_cpu(const at::Tensor& hr, const at::Tensor& kernels, int64_t scale,
                       const std::optional<at::Tensor>& noise_bank,
                       const std::optional<at::Tensor>& noise_index,
                       const std::optional<at::Tensor>& noise_offset, c10::string_view padding,
                       bool clamp, bool quantize, std::optional<at::ScalarType> out_dtype) {
  DegradeCall call = prepare_degrade(hr, kernels, scale, noise_bank, noise_index, noise_offset,
                                     padding, clamp, quantize, out_dtype);
  const DegradeParams& p = call.params;
  if (call.out.numel() == 0) return call.out;
  if (p.bank != nullptr) fill_noise_means(p);
  switch (p.hr_type) {
    case Scalar::UInt8:
      degrade_planes<uint8_t>(p);
      break;
    case Scalar::Float16:
      degrade_planes<c10::Half>(p);
      break;
    case Scalar::BFloat16:
      degrade_planes<c10::BFloat16>(p);
      break;
    default:
      degrade_planes<float>(p);
  }
  return call.out;
}

}  // namespace

TORCH_LIBRARY_IMPL(realsr_fast, CPU, m) { m.impl("degrade", &degrade_cpu); }

}  // namespace realsr_fast
