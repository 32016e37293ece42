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

#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
#define REALSR_CPU_CLONES __attribute__((target_clones("arch=skylake-avx512", "arch=haswell", "default")))
#else
#define REALSR_CPU_CLONES
#endif

namespace realsr_fast {
namespace {

constexpr int64_t kChunk = 32;  // outputs accumulated together in registers

// Geometry of one call's phase buffers.
struct PhaseLayout {
  int64_t phase_width;            // columns per phase: Wo + (k - 1) / s
  std::vector<int64_t> col_src;   // (s, phase_width): source column of each buffer column, -1 = zero
};

PhaseLayout make_layout(const DegradeParams& p) {
  PhaseLayout layout;
  layout.phase_width = p.out_width + (p.ksize - 1) / p.scale;
  layout.col_src.resize(p.scale * layout.phase_width);
  for (int64_t ph = 0; ph < p.scale; ++ph)
    for (int64_t m = 0; m < layout.phase_width; ++m)
      layout.col_src[ph * layout.phase_width + m] =
          map_coordinate(p.scale * m + ph - p.ksize / 2, p.width, p.padding);
  return layout;
}

// Copies extended rows [row0, row0 + rows) of plane (b, c) into `buf`, phase-major:
// buf[(ph * rows + r) * phase_width + m] = HR~[row0 + r, s*m + ph] (raw stored values).
template <typename T>
void fill_phases(const DegradeParams& p, const PhaseLayout& layout, int64_t b, int64_t c,
                 int64_t row0, int64_t rows, float* buf) {
  const T* img = static_cast<const T*>(p.hr) + b * p.hr_strides.n + c * p.hr_strides.c;
  const int64_t pw = layout.phase_width;
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

// sum_{u,v} K[u,v] * band[row + u][v-th tap + jj] for jj < width (N > 0 fixes width = N).
template <int64_t N>
inline void blur_chunk(const float* __restrict kernel, int64_t k, const int64_t* __restrict tap_shift,
                       const float* __restrict band, int64_t pw, int64_t width,
                       float* __restrict result) {
  float acc[kChunk] = {};
  const int64_t n = N > 0 ? N : width;
  for (int64_t u = 0; u < k; ++u) {
    const float* krow = kernel + u * k;
    const float* line = band + u * pw;
    for (int64_t v = 0; v < k; ++v) {
      const float w = krow[v];
      const float* src = line + tap_shift[v];
#pragma omp simd
      for (int64_t jj = 0; jj < n; ++jj) acc[jj] += w * src[jj];
    }
  }
  for (int64_t jj = 0; jj < n; ++jj) result[jj] = acc[jj];
}

// Output rows [i0, i1) of plane (b, c) from its filled phase buffer (whose first row is s * i0);
// tap_shift[v] is the buffer offset of kernel column v: phase (v % s), v / s columns in.
REALSR_CPU_CLONES
void blur_rows(const DegradeParams& p, const PhaseLayout& layout, const int64_t* tap_shift,
               int64_t b, int64_t c, int64_t i0, int64_t i1, const float* buf) {
  const float* kernel = p.kernels + b * p.kernel_batch_stride;
  const float divisor = unit_divisor(p.hr_type);
  const int64_t pw = layout.phase_width;
  float blurred[kChunk];
  for (int64_t i = i0; i < i1; ++i) {
    const float* band = buf + p.scale * (i - i0) * pw;
    for (int64_t j0 = 0; j0 < p.out_width; j0 += kChunk) {
      const int64_t width = std::min(kChunk, p.out_width - j0);
      if (width == kChunk)
        blur_chunk<kChunk>(kernel, p.ksize, tap_shift, band + j0, pw, width, blurred);
      else
        blur_chunk<0>(kernel, p.ksize, tap_shift, band + j0, pw, width, blurred);
      for (int64_t jj = 0; jj < width; ++jj) {
        const float v = noisy_sample(p, blurred[jj] / divisor, b, c, i, j0 + jj);
        store_unit_value(p.out, p.out_strides.at(b, c, i, j0 + jj), p.out_type, v);
      }
    }
  }
}

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
    std::vector<float> buf(p.scale * max_rows * layout.phase_width);
    std::vector<int64_t> tap_shift(p.ksize);
    for (int64_t item = begin; item < end; ++item) {
      const int64_t plane = item / bands, band = item % bands;
      const int64_t b = plane / p.channels, c = plane % p.channels;
      const int64_t i0 = band * band_rows, i1 = std::min(p.out_height, i0 + band_rows);
      const int64_t rows = p.scale * (i1 - i0 - 1) + p.ksize;
      for (int64_t v = 0; v < p.ksize; ++v)
        tap_shift[v] = (v % p.scale) * rows * layout.phase_width + v / p.scale;
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
