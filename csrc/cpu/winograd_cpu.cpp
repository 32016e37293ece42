// CPU implementation of realsr_fast::winograd_input_transform / winograd_output_transform: the
// tile transforms of winograd.h (F(6x6, 3x3) or F(4x4, 3x3), by the output tile side) over all tiles
// in parallel, 8 channels at a time (one AVX2 vector), compiled per instruction set; and of
// realsr_fast::winograd_products, the batched GEMM between them.
//
// Layouts: images are NHWC float32, contiguous (N, H, W, C); the transformed tensors are
// (P, T, C') with P = (tile + 2)^2 points and T = N * ceil(H/tile) * ceil(W/tile) tiles in (n, tile
// row, tile column) order, any strides for the first two dimensions and unit stride for channels,
// float32 or bfloat16. The arithmetic is float32 either way; bfloat16 values are rounded to nearest
// even when written, so that the GEMM between the transforms can run in bf16 on CPUs that compute
// it natively.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/ThreadLocalState.h>
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
typedef uint32_t Bits8 __attribute__((vector_size(32), aligned(4)));
typedef uint16_t Half8 __attribute__((vector_size(16), aligned(2)));

// Eight values of a transformed tensor, as float32 (a bfloat16 holds the high half of a float's bits);
// vectors pass by reference for the same ABI reason as above.
REALSR_ALWAYS_INLINE void load8(const float* p, Float8& v) { v = *reinterpret_cast<const Float8*>(p); }
REALSR_ALWAYS_INLINE void load8(const at::BFloat16* p, Float8& v) {
  v = reinterpret_cast<Float8>(__builtin_convertvector(*reinterpret_cast<const Half8*>(p), Bits8) << 16);
}
REALSR_ALWAYS_INLINE void store8(float* p, const Float8& v) { *reinterpret_cast<Float8*>(p) = v; }
REALSR_ALWAYS_INLINE void store8(at::BFloat16* p, const Float8& v) {
  const Bits8 bits = reinterpret_cast<Bits8>(v);
  const Bits8 rounded = (bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16;  // to nearest, ties to even
  *reinterpret_cast<Half8*>(p) = __builtin_convertvector(rounded, Half8);
}

// The tile grid of an (N, H, W, C) image, for output tiles of side `tile`.
struct TileGrid {
  int64_t n, h, w, c, tile, rows, cols;
  int64_t count() const { return n * rows * cols; }
  int64_t points() const { return (tile + 2) * (tile + 2); }
};

TileGrid tile_grid(const at::Tensor& image, int64_t tile, const char* op) {
  TORCH_CHECK_VALUE(tile == WinogradF6::kTile || tile == WinogradF4::kTile, op, ": tile must be ",
                    WinogradF6::kTile, " (F(6x6, 3x3)) or ", WinogradF4::kTile, " (F(4x4, 3x3)), got ", tile);
  const int64_t h = image.size(1), w = image.size(2);
  return {image.size(0), h, w, image.size(3), tile, (h + tile - 1) / tile, (w + tile - 1) / tile};
}

// Calls f(F{}) with F the winograd.h variant of the grid's tile side (checked by tile_grid).
template <typename Fn>
void with_variant(const TileGrid& grid, Fn&& f) {
  if (grid.tile == WinogradF4::kTile) {
    f(WinogradF4{});
  } else {
    f(WinogradF6{});
  }
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
  const bool dtype_ok = t.scalar_type() == at::kFloat || t.scalar_type() == at::kBFloat16;
  TORCH_CHECK_VALUE(t.device().is_cpu() && dtype_ok && t.dim() == 3 && t.size(0) == grid.points() &&
                        t.size(1) == grid.count() && t.stride(2) == 1,
                    op, ": ", name, " must be a float32 or bfloat16 CPU tensor (", grid.points(), ", ", grid.count(),
                    ", C) with unit channel stride for this image, got ", t.scalar_type(), " on ", t.device(),
                    " with shape ", t.sizes(), " and strides ", t.strides());
}

// Calls f(T{}) with T the C++ type of a transformed tensor's dtype (checked by check_transformed).
template <typename F>
void with_element_type(at::ScalarType dtype, F&& f) {
  if (dtype == at::kBFloat16) {
    f(at::BFloat16{});
  } else {
    f(float{});
  }
}

template <typename T>
struct InputParams {
  const float* x;
  T* out;
  int64_t point_stride, tile_stride;
  TileGrid grid;
};

template <typename F, typename T>
REALSR_ALWAYS_INLINE void input_tiles_impl(F, const InputParams<T>& p, int64_t begin, int64_t end) {
  constexpr int kWindow = F::kWindow, kPoints = F::kWindow * F::kWindow;
  const TileGrid& g = p.grid;
  const Float8 zero = {0, 0, 0, 0, 0, 0, 0, 0};
  for (int64_t tile = begin; tile < end; ++tile) {
    const int64_t n = tile / (g.rows * g.cols), i = tile / g.cols % g.rows, j = tile % g.cols;
    const int64_t y0 = F::kTile * i - 1, x0 = F::kTile * j - 1;  // 1 pixel of zero padding
    const bool inside = y0 >= 0 && x0 >= 0 && y0 + kWindow <= g.h && x0 + kWindow <= g.w;
    T* out = p.out + tile * p.tile_stride;
    for (int64_t c = 0; c < g.c; c += kLanes) {
      Float8 window[kPoints], v[kPoints];
      for (int a = 0; a < kWindow; ++a)
        for (int b = 0; b < kWindow; ++b) {
          const int64_t y = y0 + a, x = x0 + b;
          window[a * kWindow + b] = inside || (y >= 0 && y < g.h && x >= 0 && x < g.w)
                                        ? *reinterpret_cast<const Float8*>(p.x + ((n * g.h + y) * g.w + x) * g.c + c)
                                        : zero;
        }
      winograd_input_tile<F>(window, v);
      for (int k = 0; k < kPoints; ++k) store8(out + k * p.point_stride + c, v[k]);
    }
  }
}
REALSR_ISA_CLONES(input_tiles, input_tiles_impl)

template <typename T>
struct OutputParams {
  const T* m;
  const float* bias;
  const float* residual;  // nullptr: none
  float* out;
  int64_t point_stride, tile_stride;
  float negative_slope, residual_scale;
  bool leaky_relu;
  TileGrid grid;
};

template <typename F, typename T>
REALSR_ALWAYS_INLINE void output_tiles_impl(F, const OutputParams<T>& p, int64_t begin, int64_t end) {
  constexpr int kTile = F::kTile, kPoints = F::kWindow * F::kWindow;
  const TileGrid& g = p.grid;
  for (int64_t tile = begin; tile < end; ++tile) {
    const int64_t n = tile / (g.rows * g.cols), i = tile / g.cols % g.rows, j = tile % g.cols;
    const int64_t rows = std::min<int64_t>(kTile, g.h - kTile * i);
    const int64_t cols = std::min<int64_t>(kTile, g.w - kTile * j);
    const T* in = p.m + tile * p.tile_stride;
    for (int64_t c = 0; c < g.c; c += kLanes) {
      Float8 m[kPoints], y[kTile * kTile];
      for (int k = 0; k < kPoints; ++k) load8(in + k * p.point_stride + c, m[k]);
      winograd_output_tile<F>(m, y);
      const Float8 bias = *reinterpret_cast<const Float8*>(p.bias + c);
      for (int r = 0; r < rows; ++r)
        for (int s = 0; s < cols; ++s) {
          const int64_t at = ((n * g.h + kTile * i + r) * g.w + kTile * j + s) * g.c + c;
          Float8 value = y[r * kTile + s] + bias;
          if (p.leaky_relu) value = value > 0 ? value : value * p.negative_slope;
          if (p.residual != nullptr) value = *reinterpret_cast<const Float8*>(p.residual + at) + p.residual_scale * value;
          *reinterpret_cast<Float8*>(p.out + at) = value;
        }
    }
  }
}
REALSR_ISA_CLONES(output_tiles, output_tiles_impl)

void winograd_input_transform_cpu(const at::Tensor& x, const at::Tensor& out, int64_t channel_offset,
                                  int64_t tile) {
  constexpr const char* op = "winograd_input_transform";
  check_image(x, op, "x");
  const TileGrid grid = tile_grid(x, tile, op);
  check_transformed(out, grid, op, "out");
  TORCH_CHECK_VALUE(channel_offset >= 0 && channel_offset <= out.size(2) - grid.c, op, ": channels [",
                    channel_offset, ", ", channel_offset, " + ", grid.c, ") do not fit in out's ", out.size(2));
  with_element_type(out.scalar_type(), [&](auto element) {
    using T = decltype(element);
    const InputParams<T> p{x.const_data_ptr<float>(), out.mutable_data_ptr<T>() + channel_offset, out.stride(0),
                           out.stride(1), grid};
    with_variant(grid, [&](auto variant) {
      at::parallel_for(0, grid.count(), kTileGrain,
                       [&](int64_t begin, int64_t end) { input_tiles(variant, p, begin, end); });
    });
  });
}

void winograd_output_transform_cpu(const at::Tensor& m, const at::Tensor& bias, const at::Tensor& out,
                                   double negative_slope, bool leaky_relu, const std::optional<at::Tensor>& residual,
                                   double residual_scale, int64_t tile) {
  constexpr const char* op = "winograd_output_transform";
  check_image(out, op, "out");
  const TileGrid grid = tile_grid(out, tile, op);
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
  with_element_type(m.scalar_type(), [&](auto element) {
    using T = decltype(element);
    const OutputParams<T> p{m.const_data_ptr<T>(), bias.const_data_ptr<float>(),
                            residual ? residual->const_data_ptr<float>() : nullptr, out.mutable_data_ptr<float>(),
                            m.stride(0), m.stride(1), static_cast<float>(negative_slope),
                            static_cast<float>(residual_scale), leaky_relu, grid};
    with_variant(grid, [&](auto variant) {
      at::parallel_for(0, grid.count(), kTileGrain,
                       [&](int64_t begin, int64_t end) { output_tiles(variant, p, begin, end); });
    });
  });
}

// out[k] = transformed[k] @ weight[k] for each point k, one point per task: each product is small
// (T x Cin by Cin x Cout), and torch.bmm in bf16 first copies a `transformed` whose rows are longer
// than Cin (a dense block's slice), which a 2-D product reads in place.
void winograd_products_cpu(const at::Tensor& transformed, const at::Tensor& weight, const at::Tensor& out) {
  constexpr const char* op = "winograd_products";
  TORCH_CHECK_VALUE(transformed.dim() == 3 && weight.dim() == 3 && out.dim() == 3 &&
                        weight.size(0) == transformed.size(0) && out.size(0) == transformed.size(0) &&
                        weight.size(1) == transformed.size(2) && out.size(1) == transformed.size(1) &&
                        out.size(2) == weight.size(2),
                    op, ": expected transformed (P, T, Cin), weight (P, Cin, Cout) and out (P, T, Cout), got ",
                    transformed.sizes(), ", ", weight.sizes(), " and ", out.sizes());
  TORCH_CHECK_VALUE(transformed.scalar_type() == weight.scalar_type() && out.scalar_type() == weight.scalar_type(),
                    op, ": transformed, weight and out must share a dtype, got ", transformed.scalar_type(), ", ",
                    weight.scalar_type(), " and ", out.scalar_type());
  const at::ThreadLocalState caller;  // the workers run the products in the caller's modes (inference mode)
  TORCH_CHECK_VALUE(transformed.device().is_cpu() && weight.device().is_cpu() && out.device().is_cpu(), op,
                    ": needs CPU tensors");
  at::parallel_for(0, transformed.size(0), 1, [&](int64_t begin, int64_t end) {
    const at::ThreadLocalStateGuard modes(caller);
    for (int64_t k = begin; k < end; ++k) {
      at::Tensor product = out.select(0, k);
      at::mm_out(product, transformed.select(0, k), weight.select(0, k));
    }
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(realsr_fast, CPU, m) {
  m.impl("winograd_input_transform", &winograd_input_transform_cpu);
  m.impl("winograd_output_transform", &winograd_output_transform_cpu);
  m.impl("winograd_products", &winograd_products_cpu);
}

}  // namespace realsr_fast
