// Operator schemas of the realsr_fast library.
//
// The kernels register themselves per device in cpu/*.cpp and cuda/*.cpp; the fake (meta)
// implementations for torch.compile live in realsr_fast/ops/ (one module per op, registered by
// its __init__).
#include <torch/library.h>

TORCH_LIBRARY(realsr_fast, m) {
  // The fakes and autograd formulas are in the realsr_fast.ops package; without it, torch's error names it.
  m.set_python_module("realsr_fast.ops");
  m.def(
      "degrade(Tensor hr, Tensor kernels, int scale, Tensor? noise_bank=None, "
      "Tensor? noise_index=None, Tensor? noise_offset=None, str padding=\"symmetric\", "
      "bool clamp=True, bool quantize=False, ScalarType? out_dtype=None) -> Tensor");
  m.def("patch_stats(Tensor img, int patch, int stride) -> (Tensor, Tensor)");
  m.def("batchnorm_relu(Tensor x, Tensor weight, Tensor bias, float eps) -> (Tensor, Tensor, Tensor)");
  m.def(
      "batchnorm_relu_backward(Tensor grad_y, Tensor x, Tensor y, Tensor mean, Tensor invstd, "
      "Tensor weight) -> (Tensor, Tensor, Tensor)");
  m.def("correlation_kernel_grad(Tensor x, Tensor grad, int stride, int size) -> Tensor");
  // Winograd F(6x6, 3x3) or F(4x4, 3x3) tile transforms (by the output tile side; CPU only) and the
  // products between them, written into `out` in place.
  m.def("winograd_input_transform(Tensor x, Tensor(a!) out, int channel_offset, int tile) -> ()");
  m.def(
      "winograd_output_transform(Tensor m, Tensor bias, Tensor(a!) out, float negative_slope, "
      "bool leaky_relu, Tensor? residual, float residual_scale, int tile) -> ()");
  m.def("winograd_products(Tensor transformed, Tensor weight, Tensor(a!) out) -> ()");
}
