// CPU implementation of realsr_fast::winograd_input_transform / winograd_output_transform: the
// tile transforms of winograd.h over all tiles in parallel, 8 channels at a time (one AVX2 vector),
// compiled per instruction set. The products in between are a batched GEMM (torch.bmm) in Python
// (realsr_fast.inference.winograd_rrdbnet).
//
// Layouts: images are NHWC float32, contiguous (N, H, W, C); the transformed tensors are
// (64, T, C') with T = N * ceil(H/6) * ceil(W/6) tiles in (n, tile row, tile column) order, any
// strides for the first two dimensions and unit stride for channels.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <optional>

#include "../winograd.h"
#include "cpu_dispatch.h"

namespace realsr_fast {
namespace {

// Tiles per parallel task: a tile of 64 channels is a few microseconds of work.
constexpr int64_t kTileGrain = 16;
constexpr int64_t kLanes = 8;

// Eight floats as one value (GCC/clang vector extension); aligned(4) allows unaligned loads. Read
// and written through casts in place: a function returning one would change the baseline's ABI.
typedef float Float8 __attribute__((vector_size(32), aligned(4)));

// The tile grid of an (N, H, W, C) image.
struct TileGrid {
  int64_t n, h, w, c, rows, cols;
  int64_t count() const { return n * rows * cols; }
};

TileGrid tile_grid(const at::Tensor& image) {
  const int64_t h = image.size(1), w = image.size(2);
  return {image.size(0), h, w, image.size(3), (h + kWinogradTile - 1) / kWinogradTile,
          (w + kWinogradTile - 1) / kWinogradTile};
}

void check_image(const at::Tensor& image, const char* op, const char* name) {
  TORCH_CHECK_VALUE(image.device().is_cpu() && image.scalar_type() == at::kFloat && image.dim() == 4,
                    op, ": ", name, " must be a float32 CPU tensor (N, H, W, C), got ", image.scalar_type(),
                    " on ", image.device(), " with shape ", image.sizes());
  TORCH_CHECK_VALUE(image.is_contiguous(), op, ": ", name, " must be contiguous NHWC (N, H, W, C), got strides ",
                    image.strides());
  TORCH_CHECK_VALUE(image.size(3) % kLanes == 0, op, ": ", name, " has ", image.size(3),
                    " channels; the Winograd ops need a multiple of ", kLanes);
}

void check_transformed(const at::Tensor& t, const TileGrid& grid, const char* op, const char* name) {
  TORCH_CHECK_VALUE(t.device().is_cpu() && t.scalar_type() == at::kFloat && t.dim() == 3 &&
                        t.size(0) == kWinogradPoints && t.size(1) == grid.count() && t.stride(2) == 1,
                    op, ": ", name, " must be a float32 CPU tensor (", kWinogradPoints, ", ", grid.count(),
                    ", C) with unit channel stride for this image, got ", t.scalar_type(), " on ", t.device(),
                    " with shape ", t.sizes(), " and strides ", t.strides());
}

struct InputParams {
  const float* x;
  float* out;
  int64_t point_stride, tile_stride;
  TileGrid grid;
};

REALSR_ALWAYS_INLINE void input_tiles_impl(const InputParams& p, int64_t begin, int64_t end) {
  const TileGrid& g = p.grid;
  const Float8 zero = {0, 0, 0, 0, 0, 0, 0, 0};
  for (int64_t tile = begin; tile < end; ++tile) {
    const int64_t n = tile / (g.rows * g.cols), i = tile / g.cols % g.rows, j = tile % g.cols;
    const int64_t y0 = kWinogradTile * i - 1, x0 = kWinogradTile * j - 1;  // 1 pixel of zero padding
    const bool inside = y0 >= 0 && x0 >= 0 && y0 + kWinogradWindow <= g.h && x0 + kWinogradWindow <= g.w;
    float* out = p.out + tile * p.tile_stride;
    for (int64_t c = 0; c < g.c; c += kLanes) {
      Float8 window[kWinogradPoints], v[kWinogradPoints];
      for (int a = 0; a < kWinogradWindow; ++a)
        for (int b = 0; b < kWinogradWindow; ++b) {
          const int64_t y = y0 + a, x = x0 + b;
          window[a * kWinogradWindow + b] = inside || (y >= 0 && y < g.h && x >= 0 && x < g.w)
                                                ? *reinterpret_cast<const Float8*>(p.x + ((n * g.h + y) * g.w + x) * g.c + c)
                                                : zero;
        }
      winograd_input_tile(window, v);
      for (int k = 0; k < kWinogradPoints; ++k) *reinterpret_cast<Float8*>(out + k * p.point_stride + c) = v[k];
    }
  }
}
REALSR_ISA_CLONES(input_tiles, input_tiles_impl)

struct OutputParams {
  const float* m;
  const float* bias;
  const float* residual;  // nullptr: none
  float* out;
  int64_t point_stride, tile_stride;
  float negative_slope, residual_scale;
  bool leaky_relu;
  TileGrid grid;
};

REALSR_ALWAYS_INLINE void output_tiles_impl(const OutputParams& p, int64_t begin, int64_t end) {
  const TileGrid& g = p.grid;
  for (int64_t tile = begin; tile < end; ++tile) {
    const int64_t n = tile / (g.rows * g.cols), i = tile / g.cols % g.rows, j = tile % g.cols;
    const int64_t rows = std::min<int64_t>(kWinogradTile, g.h - kWinogradTile * i);
    const int64_t cols = std::min<int64_t>(kWinogradTile, g.w - kWinogradTile * j);
    const float* in = p.m + tile * p.tile_stride;
    for (int64_t c = 0; c < g.c; c += kLanes) {
      Float8 m[kWinogradPoints], y[kWinogradTile * kWinogradTile];
      for (int k = 0; k < kWinogradPoints; ++k) m[k] = *reinterpret_cast<const Float8*>(in + k * p.point_stride + c);
      winograd_output_tile(m, y);
      const Float8 bias = *reinterpret_cast<const Float8*>(p.bias + c);
      for (int r = 0; r < rows; ++r)
        for (int s = 0; s < cols; ++s) {
          const int64_t at = ((n * g.h + kWinogradTile * i + r) * g.w + kWinogradTile * j + s) * g.c + c;
          Float8 value = y[r * kWinogradTile + s] + bias;
          if (p.leaky_relu) value = value > 0 ? value : value * p.negative_slope;
          if (p.residual != nullptr) value = *reinterpret_cast<const Float8*>(p.residual + at) + p.residual_scale * value;
          *reinterpret_cast<Float8*>(p.out + at) = value;
        }
    }
  }
}
REALSR_ISA_CLONES(output_tiles, output_tiles_impl)

void winograd_input_transform_cpu(const at::Tensor& x, const at::Tensor& out, int64_t channel_offset) {
  constexpr const char* op = "winograd_input_transform";
  check_image(x, op, "x");
  const TileGrid grid = tile_grid(x);
  check_transformed(out, grid, op, "out");
  TORCH_CHECK_VALUE(channel_offset >= 0 && channel_offset <= out.size(2) - grid.c, op, ": channels [",
                    channel_offset, ", ", channel_offset, " + ", grid.c, ") do not fit in out's ", out.size(2));
  const InputParams p{x.const_data_ptr<float>(), out.mutable_data_ptr<float>() + channel_offset, out.stride(0),
                      out.stride(1), grid};
  at::parallel_for(0, grid.count(), kTileGrain, [&](int64_t begin, int64_t end) { input_tiles(p, begin, end); });
}

void winograd_output_transform_cpu(const at::Tensor& m, const at::Tensor& bias, const at::Tensor& out,
                                   double negative_slope, bool leaky_relu, const std::optional<at::Tensor>& residual,
                                   double residual_scale) {
  constexpr const char* op = "winograd_output_transform";
  check_image(out, op, "out");
  const TileGrid grid = tile_grid(out);
  check_transformed(m, grid, op, "m");
  TORCH_CHECK_VALUE(m.size(2) == grid.c, op, ": m has ", m.size(2), " channels, out ", grid.c);
  TORCH_CHECK_VALUE(bias.device().is_cpu() && bias.scalar_type() == at::kFloat && bias.dim() == 1 &&
                        bias.size(0) == grid.c && bias.is_contiguous(),
                    op, ": bias must be a contiguous float32 CPU tensor (", grid.c, ",), got ", bias.scalar_type(),
                    " with shape ", bias.sizes());
  if (residual) {
    check_image(*residual, op, "residual");
    TORCH_CHECK_VALUE(residual->sizes() == out.sizes(), op, ": residual ", residual->sizes(),
                      " must have out's shape ", out.sizes());
  }
  const OutputParams p{m.const_data_ptr<float>(), bias.const_data_ptr<float>(),
                       residual ? residual->const_data_ptr<float>() : nullptr, out.mutable_data_ptr<float>(),
                       m.stride(0), m.stride(1), static_cast<float>(negative_slope),
                       static_cast<float>(residual_scale), leaky_relu, grid};
  at::parallel_for(0, grid.count(), kTileGrain, [&](int64_t begin, int64_t end) { output_tiles(p, begin, end); });
}

}  // namespace

TORCH_LIBRARY_IMPL(realsr_fast, CPU, m) {
  m.impl("winograd_input_transform", &winograd_input_transform_cpu);
  m.impl("winograd_output_transform", &winograd_output_transform_cpu);
}

}  // namespace realsr_fast
