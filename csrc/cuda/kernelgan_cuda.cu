// CUDA kernels of the KernelGAN ops. batchnorm_relu and its backward: one block per row (a
// BatchNorm channel), the threads taking adjacent columns and reducing with warp shuffles.
// correlation_kernel_grad: one block per kernel tap (image, u, v), reducing over every output
// pixel; at KernelGAN's batch 16 with a 13x13 kernel that is 2 704 blocks instead of the 208
// threads of a per-row layout. The per-block algorithms are launch_plan.h's team_* functions,
// which the C++ tests run on the host.
#include "block_team.cuh"
#include "launchers.h"

namespace realsr_fast {
namespace {

constexpr int kRowThreads = 128;  // KernelGAN rows are a few hundred values: 2-4 per thread

template <typename T>
__global__ void batchnorm_relu_kernel(const __grid_constant__ BatchNormReluParams<T> p) {
  REALSR_BLOCK_TEAM(team);
  for (int64_t r = blockIdx.x; r < p.rows; r += gridDim.x) team_batchnorm_relu_row(team, p, r);
}

template <typename T>
__global__ void batchnorm_relu_backward_kernel(const __grid_constant__ BatchNormReluBackwardParams<T> p) {
  REALSR_BLOCK_TEAM(team);
  for (int64_t r = blockIdx.x; r < p.rows; r += gridDim.x) team_batchnorm_relu_backward_row(team, p, r);
}

template <typename T>
__global__ void correlation_kernel_grad_kernel(const __grid_constant__ CorrelationKernelGradParams<T> p) {
  REALSR_BLOCK_TEAM(team);
  for (int64_t tap = blockIdx.x; tap < p.images * p.size * p.size; tap += gridDim.x) team_correlation_tap(team, p, tap);
}

unsigned int blocks(int64_t items) { return static_cast<unsigned int>(blocks_for(items, 1, 1 << 16)); }

}  // namespace

template <typename T>
cudaError_t launch_batchnorm_relu(const BatchNormReluParams<T>& p, cudaStream_t stream) {
  batchnorm_relu_kernel<T><<<blocks(p.rows), kRowThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

template <typename T>
cudaError_t launch_batchnorm_relu_backward(const BatchNormReluBackwardParams<T>& p, cudaStream_t stream) {
  batchnorm_relu_backward_kernel<T><<<blocks(p.rows), kRowThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

template <typename T>
cudaError_t launch_correlation_kernel_grad(const CorrelationKernelGradParams<T>& p, cudaStream_t stream) {
  correlation_kernel_grad_kernel<T><<<blocks(p.images * p.size * p.size), kThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

#define REALSR_INSTANTIATE_KERNELGAN_LAUNCHERS(T)                                                        \
  template cudaError_t launch_batchnorm_relu<T>(const BatchNormReluParams<T>&, cudaStream_t);           \
  template cudaError_t launch_batchnorm_relu_backward<T>(const BatchNormReluBackwardParams<T>&,         \
                                                         cudaStream_t);                                 \
  template cudaError_t launch_correlation_kernel_grad<T>(const CorrelationKernelGradParams<T>&, cudaStream_t);
REALSR_INSTANTIATE_KERNELGAN_LAUNCHERS(float)
REALSR_INSTANTIATE_KERNELGAN_LAUNCHERS(double)

}  // namespace realsr_fast
