// CUDA kernels of the KernelGAN ops: batchnorm_relu and its backward (one thread per row) and
// correlation_kernel_grad (one thread per kernel row). They run the row functions of
// batchnorm_relu.h and correlation_grad.h, which the CPU path and the C++ tests run too.
#include "grid.h"
#include "launchers.h"

namespace realsr_fast {
namespace {

template <typename T>
__global__ void batchnorm_relu_kernel(const __grid_constant__ BatchNormReluParams<T> p) {
  REALSR_GRID_STRIDE_LOOP(r, p.rows) { batchnorm_relu_row(p, r); }
}

template <typename T>
__global__ void batchnorm_relu_backward_kernel(const __grid_constant__ BatchNormReluBackwardParams<T> p) {
  REALSR_GRID_STRIDE_LOOP(r, p.rows) { batchnorm_relu_backward_row(p, r); }
}

template <typename T>
__global__ void correlation_kernel_grad_kernel(const __grid_constant__ CorrelationKernelGradParams<T> p) {
  REALSR_GRID_STRIDE_LOOP(item, p.images * p.size) { correlation_kernel_grad_row(p, item / p.size, item % p.size); }
}

}  // namespace

template <typename T>
cudaError_t launch_batchnorm_relu(const BatchNormReluParams<T>& p, cudaStream_t stream) {
  batchnorm_relu_kernel<T><<<grid_for(p.rows), kThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

template <typename T>
cudaError_t launch_batchnorm_relu_backward(const BatchNormReluBackwardParams<T>& p, cudaStream_t stream) {
  batchnorm_relu_backward_kernel<T><<<grid_for(p.rows), kThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

template <typename T>
cudaError_t launch_correlation_kernel_grad(const CorrelationKernelGradParams<T>& p, cudaStream_t stream) {
  correlation_kernel_grad_kernel<T><<<grid_for(p.images * p.size), kThreads, 0, stream>>>(p);
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
