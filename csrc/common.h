// Pieces shared by every op and by both the CPU and the CUDA paths.
//
// Everything here is plain C++ (plus c10's Half/BFloat16, which are host/device types), so it can
// be included from .cu files without ATen: nvcc then compiles in seconds instead of minutes.
#pragma once

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define HOST_DEVICE __host__ __device__ __forceinline__
#elif defined(__GNUC__)
// Forced like __forceinline__ on the device, so that the CPU's per-ISA clones compile these
// helpers for their own instruction set (cpu/cpu_dispatch.h).
#define HOST_DEVICE __attribute__((always_inline)) inline
#else
#define HOST_DEVICE inline
#endif

namespace realsr_fast {

// The element types the ops read and write; passed at run time to keep instantiations few.
enum class Scalar : int32_t { UInt8 = 0, Float16 = 1, BFloat16 = 2, Float32 = 3 };

// Reads element `offset` of an array of `type` as float, without scaling (uint8 gives 0..255).
HOST_DEVICE float load_as_float(const void* base, int64_t offset, Scalar type) {
  switch (type) {
    case Scalar::UInt8:
      return static_cast<float>(static_cast<const uint8_t*>(base)[offset]);
    case Scalar::Float16:
      return static_cast<float>(static_cast<const c10::Half*>(base)[offset]);
    case Scalar::BFloat16:
      return static_cast<float>(static_cast<const c10::BFloat16*>(base)[offset]);
    default:
      return static_cast<const float*>(base)[offset];
  }
}

// Round half to even, the default IEEE rounding mode (same as torch.round and numpy.rint).
HOST_DEVICE float round_half_even(float x) { return rintf(x); }

// Writes a value in [0, 1] units: uint8 stores round(255 * v) clamped to 0..255, float types store v.
HOST_DEVICE void store_unit_value(void* base, int64_t offset, Scalar type, float v) {
  switch (type) {
    case Scalar::UInt8: {
      const float q = fminf(fmaxf(round_half_even(v * 255.0f), 0.0f), 255.0f);
      static_cast<uint8_t*>(base)[offset] = static_cast<uint8_t>(q);
      break;
    }
    case Scalar::Float16:
      static_cast<c10::Half*>(base)[offset] = c10::Half(v);
      break;
    case Scalar::BFloat16:
      static_cast<c10::BFloat16*>(base)[offset] = c10::BFloat16(v);
      break;
    default:
      static_cast<float*>(base)[offset] = v;
  }
}

// Divisor that maps a stored value to [0, 1] units: 255 for uint8 images, 1 for float images.
HOST_DEVICE float unit_divisor(Scalar type) { return type == Scalar::UInt8 ? 255.0f : 1.0f; }

// Strides of a 4-D (N, C, H, W) tensor in elements; any layout (contiguous, channels_last, views).
struct Strides4 {
  int64_t n, c, h, w;
  HOST_DEVICE int64_t at(int64_t i0, int64_t i1, int64_t i2, int64_t i3) const {
    return i0 * n + i1 * c + i2 * h + i3 * w;
  }
};

}  // namespace realsr_fast
