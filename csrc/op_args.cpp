#include "op_args.h"

#include <ATen/ATen.h>

#include <string>

namespace realsr_fast {
namespace {

Scalar scalar_of(const at::Tensor& t, const char* name) {
  switch (t.scalar_type()) {
    case at::kByte:
      return Scalar::UInt8;
    case at::kHalf:
      return Scalar::Float16;
    case at::kBFloat16:
      return Scalar::BFloat16;
    case at::kFloat:
      return Scalar::Float32;
    default:
      TORCH_CHECK_VALUE(false, name, " must be uint8, float16, bfloat16 or float32, got ",
                        t.scalar_type());
  }
  return Scalar::Float32;  // unreachable
}

Strides4 strides_of(const at::Tensor& t) {
  return {t.stride(0), t.stride(1), t.stride(2), t.stride(3)};
}

Padding parse_padding(std::string_view padding) {
  if (padding == "symmetric") return Padding::Symmetric;
  if (padding == "reflect") return Padding::Reflect;
  if (padding == "replicate") return Padding::Replicate;
  if (padding == "zeros") return Padding::Zeros;
  TORCH_CHECK_VALUE(false, "degrade: padding must be 'symmetric', 'reflect', 'replicate' or 'zeros', got '",
                    std::string(padding), "'");
  return Padding::Zeros;  // unreachable
}

void check_same_device(const at::Tensor& t, const at::Tensor& hr, const char* name) {
  TORCH_CHECK_VALUE(t.device() == hr.device(), "degrade: ", name, " is on ", t.device(),
                    " but hr is on ", hr.device(), "; move it to the same device");
}

// torch's 'reflect' cannot reach further than one image length past the border.
void check_reflect_reach(int64_t before, int64_t after, int64_t n, const char* axis) {
  TORCH_CHECK_VALUE(before < n && after < n, "degrade: padding='reflect' needs the kernel window to stay within one ",
                    axis, " of the image (needs ", std::max(before, after), " samples past the border, the ",
                    axis, " is ", n, "); use padding='symmetric' or a larger image");
}

void check_noise_choice(const at::Tensor& bank, const at::Tensor& index, const at::Tensor& offset,
                        const at::Tensor& hr, int64_t out_h, int64_t out_w) {
  const int64_t batch = hr.size(0);
  TORCH_CHECK_VALUE(bank.dim() == 4, "degrade: noise_bank must be (N, C, P, P), got ", bank.sizes());
  TORCH_CHECK_VALUE(bank.size(1) == hr.size(1), "degrade: noise_bank has ", bank.size(1),
                    " channels but hr has ", hr.size(1));
  TORCH_CHECK_VALUE(bank.size(0) > 0, "degrade: noise_bank is empty");
  TORCH_CHECK_VALUE(index.dim() == 1 && index.size(0) == batch, "degrade: noise_index must be (B,) = (",
                    batch, ",), got ", index.sizes());
  TORCH_CHECK_VALUE(offset.dim() == 2 && offset.size(0) == batch && offset.size(1) == 2,
                    "degrade: noise_offset must be (B, 2) = (", batch, ", 2), got ", offset.sizes());
  TORCH_CHECK_VALUE(!at::isFloatingType(index.scalar_type()) && !at::isFloatingType(offset.scalar_type()),
                    "degrade: noise_index and noise_offset must be integer tensors");
  check_same_device(bank, hr, "noise_bank");
  check_same_device(index, hr, "noise_index");
  check_same_device(offset, hr, "noise_offset");
  // On CUDA the kernels check each sample's choice themselves (noise_choice_in_range, a device-side
  // assert): copying the indices here would block the stream on every call.
  if (batch == 0 || !index.device().is_cpu()) return;
  const at::Tensor idx = index.to(at::kLong).contiguous();
  const at::Tensor off = offset.to(at::kLong).contiguous();
  const int64_t* ip = idx.const_data_ptr<int64_t>();
  const int64_t* op = off.const_data_ptr<int64_t>();
  for (int64_t b = 0; b < batch; ++b) {
    TORCH_CHECK_VALUE(ip[b] >= 0 && ip[b] < bank.size(0), "degrade: noise_index[", b, "] = ", ip[b],
                      " is outside the bank of ", bank.size(0), " patches");
    const int64_t oy = op[2 * b], ox = op[2 * b + 1];
    TORCH_CHECK_VALUE(crop_fits(oy, out_h, bank.size(2)) && crop_fits(ox, out_w, bank.size(3)),
                      "degrade: noise_offset[", b, "] = (", oy, ", ", ox, ") puts the ", out_h, "x", out_w,
                      " noise crop outside the ", bank.size(2), "x", bank.size(3), " bank patch");
  }
}

}  // namespace

DegradeCall prepare_degrade(const at::Tensor& hr, const at::Tensor& kernels, int64_t scale,
                            const std::optional<at::Tensor>& noise_bank,
                            const std::optional<at::Tensor>& noise_index,
                            const std::optional<at::Tensor>& noise_offset,
                            std::string_view padding, bool clamp, bool quantize,
                            std::optional<at::ScalarType> out_dtype) {
  TORCH_CHECK_VALUE(hr.dim() == 4, "degrade: hr must be (B, C, H, W), got ", hr.sizes());
  TORCH_CHECK_VALUE(scale >= 1, "degrade: scale must be >= 1, got ", scale);
  TORCH_CHECK_VALUE(hr.size(2) > 0 && hr.size(3) > 0, "degrade: hr has an empty spatial size ", hr.sizes());
  TORCH_CHECK_VALUE(kernels.scalar_type() == at::kFloat, "degrade: kernels must be float32, got ",
                    kernels.scalar_type());
  TORCH_CHECK_VALUE(kernels.dim() == 2 || kernels.dim() == 3,
                    "degrade: kernels must be (k, k) or (B, k, k), got ", kernels.sizes());
  const int64_t batch = hr.size(0), channels = hr.size(1), height = hr.size(2), width = hr.size(3);
  const int64_t k = kernels.size(-1);
  TORCH_CHECK_VALUE(k >= 1 && kernels.size(-2) == k, "degrade: kernels must be square, got ", kernels.sizes());
  TORCH_CHECK_VALUE(kernels.dim() == 2 || kernels.size(0) == batch, "degrade: kernels has ", kernels.size(0),
                    " entries but hr has a batch of ", batch);
  check_same_device(kernels, hr, "kernels");
  const Padding pad = parse_padding(padding);

  const at::ScalarType out_type = out_dtype.value_or(at::kFloat);
  TORCH_CHECK_VALUE(out_type == at::kFloat || out_type == at::kHalf || out_type == at::kBFloat16 ||
                        out_type == at::kByte,
                    "degrade: out_dtype must be float32, float16, bfloat16 or uint8, got ", out_type);
  const int64_t out_h = (height + scale - 1) / scale, out_w = (width + scale - 1) / scale;
  if (pad == Padding::Reflect) {
    check_reflect_reach(k / 2, scale * (out_h - 1) + k - 1 - k / 2 - (height - 1), height, "height");
    check_reflect_reach(k / 2, scale * (out_w - 1) + k - 1 - k / 2 - (width - 1), width, "width");
  }

  const bool any_noise = noise_bank.has_value() || noise_index.has_value() || noise_offset.has_value();
  const bool all_noise = noise_bank.has_value() && noise_index.has_value() && noise_offset.has_value();
  TORCH_CHECK_VALUE(!any_noise || all_noise,
                    "degrade: noise_bank, noise_index and noise_offset go together; pass all three or none");

  DegradeCall call;
  call.out = at::empty({batch, channels, out_h, out_w},
                       hr.options().dtype(out_type).memory_format(hr.suggest_memory_format()));
  DegradeParams& p = call.params;
  p.hr = hr.data_ptr();
  p.hr_type = scalar_of(hr, "degrade: hr");
  p.hr_strides = strides_of(hr);
  p.batch = batch;
  p.channels = channels;
  p.height = height;
  p.width = width;
  p.out_height = out_h;
  p.out_width = out_w;
  const at::Tensor kern = kernels.contiguous();
  call.keep_alive.push_back(kern);
  p.kernels = kern.data_ptr<float>();
  p.kernel_batch_stride = kernels.dim() == 3 ? k * k : 0;
  p.ksize = k;
  p.scale = scale;
  p.padding = pad;
  p.bank = nullptr;
  p.bank_type = Scalar::Float32;
  p.bank_strides = {0, 0, 0, 0};
  p.bank_count = p.bank_height = p.bank_width = 0;
  p.noise_index = nullptr;
  p.noise_offset = nullptr;
  p.noise_mean = nullptr;
  if (all_noise) {
    const at::Tensor& bank = *noise_bank;
    check_noise_choice(bank, *noise_index, *noise_offset, hr, out_h, out_w);
    const at::Tensor idx = noise_index->to(at::kLong).contiguous();
    const at::Tensor off = noise_offset->to(at::kLong).contiguous();
    call.keep_alive.insert(call.keep_alive.end(), {bank, idx, off});
    call.noise_mean = at::empty({batch * channels}, hr.options().dtype(at::kDouble));
    p.bank = bank.data_ptr();
    p.bank_type = scalar_of(bank, "degrade: noise_bank");
    p.bank_strides = strides_of(bank);
    p.bank_count = bank.size(0);
    p.bank_height = bank.size(2);
    p.bank_width = bank.size(3);
    p.noise_index = idx.data_ptr<int64_t>();
    p.noise_offset = off.data_ptr<int64_t>();
    p.noise_mean = call.noise_mean.data_ptr<double>();
  }
  p.out = call.out.data_ptr();
  p.out_type = scalar_of(call.out, "degrade: out");
  p.out_strides = strides_of(call.out);
  p.clamp = clamp || out_type == at::kByte;
  p.quantize = quantize || out_type == at::kByte;
  return call;
}

PatchStatsCall prepare_patch_stats(const at::Tensor& img, int64_t patch, int64_t stride) {
  TORCH_CHECK_VALUE(img.dim() == 4, "patch_stats: img must be (B, C, H, W), got ", img.sizes());
  TORCH_CHECK_VALUE(img.size(1) == 1 || img.size(1) == 3,
                    "patch_stats: img must have 1 (grey) or 3 (RGB) channels, got ", img.size(1));
  TORCH_CHECK_VALUE(patch >= 1 && patch <= kMaxPatch, "patch_stats: patch must be in 1..", kMaxPatch,
                    ", got ", patch);
  TORCH_CHECK_VALUE(stride >= 1, "patch_stats: stride must be >= 1, got ", stride);
  const int64_t batch = img.size(0), height = img.size(2), width = img.size(3);
  const int64_t out_h = height >= patch ? (height - patch) / stride + 1 : 0;
  const int64_t out_w = width >= patch ? (width - patch) / stride + 1 : 0;

  PatchStatsCall call;
  PatchStatsParams& p = call.params;
  p.type = scalar_of(img, "patch_stats: img");
  call.integer = p.type == Scalar::UInt8;
  const auto opts = img.options();
  call.mean = at::empty({batch, out_h, out_w}, opts.dtype(at::kFloat));
  call.var = at::empty({batch, out_h, out_w}, opts.dtype(at::kFloat));
  const auto acc = opts.dtype(call.integer ? at::kLong : at::kDouble);
  call.col_sum = at::empty({batch, out_h, width}, acc);
  call.col_sq = at::empty({batch, out_h, width}, acc);
  p.img = img.data_ptr();
  p.strides = strides_of(img);
  p.batch = batch;
  p.channels = img.size(1);
  p.height = height;
  p.width = width;
  p.patch = patch;
  p.stride = stride;
  p.out_height = out_h;
  p.out_width = out_w;
  p.col_sum = call.col_sum.data_ptr();
  p.col_sq = call.col_sq.data_ptr();
  p.mean = call.mean.data_ptr<float>();
  p.var = call.var.data_ptr<float>();
  return call;
}

namespace {

// Checks that `t` has `shape` and x's dtype and device; returns it contiguous.
at::Tensor like_rows(const at::Tensor& t, const at::Tensor& x, at::IntArrayRef shape, const char* op,
                     const char* name) {
  TORCH_CHECK_VALUE(t.sizes() == shape, op, ": ", name, " must have shape ", shape, ", got ", t.sizes());
  TORCH_CHECK_VALUE(t.scalar_type() == x.scalar_type(), op, ": ", name, " must be ", x.scalar_type(),
                    " like x, got ", t.scalar_type());
  TORCH_CHECK_VALUE(t.device() == x.device(), op, ": ", name, " must be on ", x.device(), " like x, got ",
                    t.device());
  return t.contiguous();
}

// The KernelGAN ops compute in x's own type: float32 (training) or float64 (equivalence tests).
void check_float_or_double(const at::Tensor& x, const char* op) {
  TORCH_CHECK_VALUE(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble, op,
                    ": x must be float32 or float64, got ", x.scalar_type());
}

void check_rows(const at::Tensor& x, const char* op) {
  TORCH_CHECK_VALUE(x.dim() == 2, op, ": x must be (rows, cols), got ", x.sizes());
  check_float_or_double(x, op);
  TORCH_CHECK_VALUE(x.size(1) >= 2, op, ": BatchNorm needs more than one value per row (channel), got shape ",
                    x.sizes());
}

}  // namespace

BatchNormReluCall prepare_batchnorm_relu(const at::Tensor& x, const at::Tensor& weight,
                                         const at::Tensor& bias, double eps) {
  const char* op = "batchnorm_relu";
  check_rows(x, op);
  TORCH_CHECK_VALUE(eps > 0, op, ": eps must be > 0, got ", eps);
  BatchNormReluCall call;
  call.x = x.contiguous();
  call.weight = like_rows(weight, x, {x.size(0)}, op, "weight");
  call.bias = like_rows(bias, x, {x.size(0)}, op, "bias");
  call.eps = eps;
  call.y = at::empty_like(call.x);
  call.mean = at::empty({x.size(0)}, x.options());
  call.invstd = at::empty({x.size(0)}, x.options());
  return call;
}

BatchNormReluBackwardCall prepare_batchnorm_relu_backward(const at::Tensor& grad_y, const at::Tensor& x,
                                                          const at::Tensor& y, const at::Tensor& mean,
                                                          const at::Tensor& invstd, const at::Tensor& weight) {
  const char* op = "batchnorm_relu_backward";
  check_rows(x, op);
  BatchNormReluBackwardCall call;
  call.x = x.contiguous();
  call.grad_y = like_rows(grad_y, x, x.sizes(), op, "grad_y");
  call.y = like_rows(y, x, x.sizes(), op, "y");
  call.mean = like_rows(mean, x, {x.size(0)}, op, "mean");
  call.invstd = like_rows(invstd, x, {x.size(0)}, op, "invstd");
  call.weight = like_rows(weight, x, {x.size(0)}, op, "weight");
  call.grad_x = at::empty_like(call.x);
  call.grad_weight = at::empty({x.size(0)}, x.options());
  call.grad_bias = at::empty({x.size(0)}, x.options());
  return call;
}

CorrelationKernelGradCall prepare_correlation_kernel_grad(const at::Tensor& x, const at::Tensor& grad,
                                                          int64_t stride, int64_t size) {
  const char* op = "correlation_kernel_grad";
  TORCH_CHECK_VALUE(x.dim() == 4, op, ": x must be (B, N, H, W), got ", x.sizes());
  check_float_or_double(x, op);
  TORCH_CHECK_VALUE(grad.dim() == 4 && grad.size(0) == x.size(0) && grad.size(1) == x.size(1), op,
                    ": grad must be (B, N, h, w) with x's B and N, got ", grad.sizes(), " for x ", x.sizes());
  TORCH_CHECK_VALUE(stride >= 1, op, ": stride must be >= 1, got ", stride);
  TORCH_CHECK_VALUE(size >= 1 && size <= kMaxCorrelationKernel, op, ": size must be in 1..",
                    kMaxCorrelationKernel, ", got ", size);
  for (int axis = 2; axis < 4; ++axis)
    TORCH_CHECK_VALUE(grad.size(axis) >= 1 && strided_reach_fits(grad.size(axis), stride, size, x.size(axis)), op,
                      ": a ", grad.size(axis), "-sample output with stride ", stride, " and kernel ", size,
                      " reads past the ", x.size(axis), " samples of x along dim ", axis);
  CorrelationKernelGradCall call;
  call.x = x.contiguous();
  call.grad = like_rows(grad, x, grad.sizes(), op, "grad");
  call.stride = stride;
  call.size = size;
  call.grad_kernel = at::empty({x.size(1), size, size}, x.options());
  return call;
}

}  // namespace realsr_fast
