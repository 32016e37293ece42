// CUDA kernels of realsr_fast::degrade: one thread per output sample, running the same
// degrade_sample() the C++ tests check on the host. The crop means of the noise come first,
// one block per (sample, channel).
#include "grid.h"
#include "launchers.h"

namespace realsr_fast {
namespace {

__global__ void noise_mean_kernel(const __grid_constant__ DegradeParams p) {
  __shared__ double partial[kThreads];
  const int64_t plane = blockIdx.x;
  const int64_t b = plane / p.channels, c = plane % p.channels;
  const int64_t count = p.out_height * p.out_width;
  double sum = 0.0;
  for (int64_t idx = threadIdx.x; idx < count; idx += blockDim.x)
    sum += noise_crop_value(p, b, c, idx / p.out_width, idx % p.out_width);
  partial[threadIdx.x] = sum;
  __syncthreads();
  for (int half = blockDim.x / 2; half > 0; half /= 2) {
    if (threadIdx.x < half) partial[threadIdx.x] += partial[threadIdx.x + half];
    __syncthreads();
  }
  if (threadIdx.x == 0) p.noise_mean[plane] = partial[0] / static_cast<double>(count);
}

template <typename T>
__global__ void degrade_kernel(const __grid_constant__ DegradeParams p) {
  const int64_t total = p.batch * p.channels * p.out_height * p.out_width;
  REALSR_GRID_STRIDE_LOOP(idx, total) {
    const int64_t j = idx % p.out_width;
    int64_t rest = idx / p.out_width;
    const int64_t i = rest % p.out_height;
    rest /= p.out_height;
    const int64_t c = rest % p.channels, b = rest / p.channels;
    store_unit_value(p.out, p.out_strides.at(b, c, i, j), p.out_type, degrade_sample<T>(p, b, c, i, j));
  }
}

}  // namespace

cudaError_t launch_degrade(const DegradeParams& p, cudaStream_t stream) {
  if (p.bank != nullptr) {
    noise_mean_kernel<<<static_cast<unsigned int>(p.batch * p.channels), kThreads, 0, stream>>>(p);
  }
  const unsigned int grid = grid_for(p.batch * p.channels * p.out_height * p.out_width);
  switch (p.hr_type) {
    case Scalar::UInt8:
      degrade_kernel<uint8_t><<<grid, kThreads, 0, stream>>>(p);
      break;
    case Scalar::Float16:
      degrade_kernel<c10::Half><<<grid, kThreads, 0, stream>>>(p);
      break;
    case Scalar::BFloat16:
      degrade_kernel<c10::BFloat16><<<grid, kThreads, 0, stream>>>(p);
      break;
    default:
      degrade_kernel<float><<<grid, kThreads, 0, stream>>>(p);
  }
  return cudaGetLastError();
}

}  // namespace realsr_fast
