// CPU implementation of realsr_fast::correlation_kernel_grad: the row function of
// correlation_grad.h over (image, kernel row) pairs in parallel, compiled per instruction set.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "../op_args.h"
#include "cpu_dispatch.h"

namespace realsr_fast {
namespace {

template <typename T>
REALSR_ALWAYS_INLINE void kernel_grad_rows_impl(const CorrelationKernelGradParams<T>& p, int64_t begin, int64_t end) {
  for (int64_t item = begin; item < end; ++item) correlation_kernel_grad_row(p, item / p.size, item % p.size);
}
REALSR_ISA_CLONES(kernel_grad_rows, kernel_grad_rows_impl)

at::Tensor correlation_kernel_grad_cpu(const at::Tensor& x, const at::Tensor& grad, int64_t stride, int64_t size) {
  const CorrelationKernelGradCall call = prepare_correlation_kernel_grad(x, grad, stride, size);
  AT_DISPATCH_FLOATING_TYPES(call.x.scalar_type(), "correlation_kernel_grad", [&] {
    const auto p = call.params<scalar_t>();
    at::parallel_for(0, p.images * p.size, 1, [&](int64_t begin, int64_t end) { kernel_grad_rows(p, begin, end); });
  });
  return call.grad_kernel;
}

}  // namespace

TORCH_LIBRARY_IMPL(realsr_fast, CPU, m) { m.impl("correlation_kernel_grad", &correlation_kernel_grad_cpu); }

}  // namespace realsr_fast
