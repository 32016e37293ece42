"""The compiled ops of realsr_fast, and the plain-PyTorch compositions they replace.

- :func:`degrade`: blur + stride downsample + real-noise injection in one pass (RealSR's
  degradation, docs/METHOD.md §3 and §5).
- :func:`patch_stats`: grey mean and variance of every patch, for noise mining (section 4).
- :func:`batchnorm_relu`: training-mode BatchNorm + ReLU in one pass forward and one backward,
  for KernelGAN's discriminator (section 6), whose small maps make the stock ops' overhead dominate.
- :func:`correlation_kernel_grad`: the kernel gradient of a strided correlation (KernelGAN's
  collapsed generator), which the stock convolution backward computes slowly for large kernels.
- :func:`winograd_input_transform` / :func:`winograd_output_transform`: the tile transforms of a
  Winograd F(6x6, 3x3) or F(4x4, 3x3) convolution (docs/winograd.md), for fp32 or bf16 RRDBNet
  inference on the CPU (CPU only, no gradient), and :func:`winograd_products`, the batched GEMM
  between them.

The first four run on CPU and CUDA tensors through the dispatcher (``torch.ops.realsr_fast.*``) and have fake
implementations, so ``torch.compile`` can trace code that calls them. Each op has its own module
here (``_degrade``, ``_patch_stats``, ``_batchnorm_relu``, ``_correlation_kernel_grad``,
``_winograd``; ``_isa`` holds the ISA switch and ``_library`` loads ``realsr_fast._C``) with its
wrapper, its autograd formula (the gradient of ``degrade`` is that of its stock composition), its
fake and its ``*_reference``; this package re-exports them all, so ``from realsr_fast.ops import X``
is the way in. The ops are complete once this package is imported, as every part of realsr_fast
that runs them does. The library names this package as their home (``set_python_module``):
tracing an op with only ``realsr_fast._C`` loaded fails with an error that says to import
``realsr_fast.ops``. torch accepts a fake only when it is registered from that very module, so the
op modules list their fakes (``FAKES``) and this ``__init__`` registers them.
``degrade`` is differentiable in ``hr`` and ``kernels`` (not through ``quantize`` or a uint8 output,
which raise); ``batchnorm_relu`` once (a double backward raises). The ``*_reference`` functions
(``degrade_reference``, ``patch_stats_reference``, ``batchnorm_relu_reference``,
``correlation_kernel_grad_reference``) are what a user would write with stock PyTorch; tests check
the ops against them and benchmarks time the ops against them.
"""

from __future__ import annotations

import torch

from realsr_fast.ops import (
    _batchnorm_relu,
    _correlation_kernel_grad,
    _degrade,
    _patch_stats,
    _winograd,
)
from realsr_fast.ops._batchnorm_relu import batchnorm_relu, batchnorm_relu_reference
from realsr_fast.ops._correlation_kernel_grad import correlation_kernel_grad, correlation_kernel_grad_reference
from realsr_fast.ops._degrade import PADDINGS, degrade, degrade_reference, symmetric_index
from realsr_fast.ops._isa import cpu_isa, forced_cpu_isa
from realsr_fast.ops._patch_stats import grey_reference, patch_stats, patch_stats_reference
from realsr_fast.ops._winograd import (
    WINOGRAD_CHANNEL_MULTIPLE,
    WINOGRAD_KERNEL_TRANSFORMS,
    winograd_input_transform,
    winograd_kernels,
    winograd_output_transform,
    winograd_points,
    winograd_products,
    winograd_tile_count,
)

__all__ = [
    "PADDINGS", "degrade", "degrade_reference", "symmetric_index",
    "patch_stats", "patch_stats_reference", "grey_reference",
    "batchnorm_relu", "batchnorm_relu_reference",
    "correlation_kernel_grad", "correlation_kernel_grad_reference",
    "WINOGRAD_KERNEL_TRANSFORMS", "WINOGRAD_CHANNEL_MULTIPLE",
    "winograd_kernels", "winograd_points", "winograd_tile_count", "winograd_input_transform",
    "winograd_output_transform", "winograd_products",
    "cpu_isa", "forced_cpu_isa",
]

# Here, not in the op modules: torch checks that a C++ op's fake is registered from the module its
# library names (`m.set_python_module("realsr_fast.ops")` in csrc/ops.cpp), i.e. from this frame.
for _module in (_degrade, _patch_stats, _batchnorm_relu, _correlation_kernel_grad, _winograd):
    for _name, _fake in _module.FAKES.items():
        torch.library.register_fake(_name, _fake)
del _module, _name, _fake
