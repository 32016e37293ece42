// CUDA kernels of realsr_fast::degrade. The noise crop means come first, one block per
// (sample, channel); then one block per (output tile, plane) blurs from a shared-memory copy of its
// HR window, each thread a run of adjacent outputs (launch_plan.h: DegradeTile). Kernels too large
// for a tile in the device's shared memory per block take the direct kernel, one thread per output
// running degrade_sample().
// Noise choices are checked here, on the device (a device-side assert; the output is NaN if
// asserts are compiled out), so a call never waits for the GPU.
#include <atomic>

#include "block_team.cuh"
#include "grid.h"
#include "launchers.h"

namespace realsr_fast {
namespace {

constexpr int kDefaultSmemLimit = 48 * 1024;  // per block without opting in

__device__ __forceinline__ void assert_noise_choice(const DegradeParams& p, int64_t b) {
  if (p.bank != nullptr) {
    CUDA_KERNEL_ASSERT_MSG(noise_choice_in_range(p, b), "degrade: noise_index / noise_offset outside the bank");
  }
}

__global__ void noise_mean_kernel(const __grid_constant__ DegradeParams p) {
  REALSR_BLOCK_TEAM(team);
  for (int64_t plane = blockIdx.x; plane < p.batch * p.channels; plane += gridDim.x) {
    const int64_t b = plane / p.channels;
    assert_noise_choice(p, b);
    const double mean = team_noise_mean(team, p, b, plane % p.channels);
    if (threadIdx.x == 0) p.noise_mean[plane] = mean;
  }
}

template <typename T>
__global__ void degrade_direct_kernel(const __grid_constant__ DegradeParams p) {
  const int64_t total = p.batch * p.channels * p.out_height * p.out_width;
  REALSR_GRID_STRIDE_LOOP(idx, total) {
    const Index4 at = unflatten4(idx, p.channels, p.out_height, p.out_width);
    assert_noise_choice(p, at.i0);
    const float v = checked_noisy_sample(p, blur_sample<T>(p, at.i0, at.i1, at.i2, at.i3), at.i0, at.i1, at.i2, at.i3);
    store_unit_value(p.out, p.out_strides.at(at.i0, at.i1, at.i2, at.i3), p.out_type, v);
  }
}

// blockIdx = (tile column, tile row, plane); planes beyond gridDim.z are strided.
template <typename T>
__global__ void degrade_tiled_kernel(const __grid_constant__ DegradeParams p, const __grid_constant__ DegradeTile t) {
  extern __shared__ __align__(16) float smem[];
  float* kernel = smem;
  float* tile = smem + t.kernel_floats;
  int64_t* row_source = reinterpret_cast<int64_t*>(tile + t.tile_floats);
  const int64_t i0 = blockIdx.y * t.side, j0 = blockIdx.x * t.width;
  const int groups = static_cast<int>(t.width) / kRun;
  const int ti = threadIdx.x / groups, c0 = (threadIdx.x % groups) * kRun;
  const int kernel_floats = static_cast<int>(t.kernel_floats), cols = static_cast<int>(p.scale * t.pitch);
  const float divisor = unit_divisor(p.hr_type);
  for (int r = threadIdx.x; r < t.rows; r += blockDim.x) row_source[r] = tile_row_source(p, i0, r);
  for (int64_t plane = blockIdx.z; plane < p.batch * p.channels; plane += gridDim.z) {
    const int64_t b = plane / p.channels, c = plane % p.channels;
    const T* img = static_cast<const T*>(p.hr) + b * p.hr_strides.n + c * p.hr_strides.c;
    __syncthreads();  // the previous plane's reads are done (and, the first time, row_source is written)
    for (int e = threadIdx.x; e < kernel_floats; e += blockDim.x) fill_tile_kernel_element(p, t, b, e, kernel);
    for (int cx = threadIdx.x; cx < cols; cx += blockDim.x) fill_tile_column<T>(p, t, img, row_source, j0, cx, tile);
    __syncthreads();
    const int64_t i = i0 + ti;
    if (i < p.out_height && j0 + c0 < p.out_width) {
      assert_noise_choice(p, b);
      float blurred[kRun];
      tile_blur_run(t, tile, kernel, static_cast<int>(p.ksize), static_cast<int>(p.scale), ti, c0, blurred);
#pragma unroll
      for (int r = 0; r < kRun; ++r) {
        const int64_t j = j0 + c0 + r;
        if (j < p.out_width)
          store_unit_value(p.out, p.out_strides.at(b, c, i, j), p.out_type, checked_noisy_sample(p, blurred[r] / divisor, b, c, i, j));
      }
    }
  }
}

constexpr int kMaxDevices = 64;

// The current device's shared memory per block with opt-in (every GPU since Volta: 96 KiB or
// more), queried once per device: a training step calls degrade every iteration.
int smem_limit(int device) {
  static std::atomic<int> limits[kMaxDevices] = {};
  if (device < kMaxDevices && limits[device].load(std::memory_order_relaxed) > 0)
    return limits[device].load(std::memory_order_relaxed);
  int optin = 0;
  if (cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device) != cudaSuccess)
    optin = kDefaultSmemLimit;
  const int limit = optin > kDefaultSmemLimit ? optin : kDefaultSmemLimit;
  if (device < kMaxDevices) limits[device].store(limit, std::memory_order_relaxed);
  return limit;
}

template <typename T>
cudaError_t launch_blur(const DegradeParams& p, cudaStream_t stream) {
  int device = 0;
  if (const cudaError_t err = cudaGetDevice(&device); err != cudaSuccess) return err;
  const int limit = smem_limit(device);
  const DegradeTile t = choose_degrade_tile(p, limit);
  if (t.side == 0) {
    degrade_direct_kernel<T><<<grid_for(p.batch * p.channels * p.out_height * p.out_width), kThreads, 0, stream>>>(p);
    return cudaGetLastError();
  }
  // Opt the tiled kernel in to the whole limit once per device (the attribute is per function and device).
  static std::atomic<bool> opted_in[kMaxDevices] = {};
  if (t.smem_bytes > kDefaultSmemLimit && (device >= kMaxDevices || !opted_in[device].load(std::memory_order_relaxed))) {
    const cudaError_t err = cudaFuncSetAttribute(degrade_tiled_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize, limit);
    if (err != cudaSuccess) return err;
    if (device < kMaxDevices) opted_in[device].store(true, std::memory_order_relaxed);
  }
  const dim3 grid(static_cast<unsigned int>(blocks_for(p.out_width, t.width, kMaxGridX)),
                  static_cast<unsigned int>(blocks_for(p.out_height, t.side, kMaxGridYZ)),
                  static_cast<unsigned int>(blocks_for(p.batch * p.channels, 1, kMaxGridYZ)));
  degrade_tiled_kernel<T><<<grid, static_cast<unsigned int>(t.threads), t.smem_bytes, stream>>>(p, t);
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_degrade(const DegradeParams& p, cudaStream_t stream) {
  if (p.bank != nullptr) {
    noise_mean_kernel<<<static_cast<unsigned int>(blocks_for(p.batch * p.channels, 1, 1 << 16)), kThreads, 0, stream>>>(p);
  }
  switch (p.hr_type) {
    case Scalar::UInt8:
      return launch_blur<uint8_t>(p, stream);
    case Scalar::Float16:
      return launch_blur<c10::Half>(p, stream);
    case Scalar::BFloat16:
      return launch_blur<c10::BFloat16>(p, stream);
    default:
      return launch_blur<float>(p, stream);
  }
}

}  // namespace realsr_fast
