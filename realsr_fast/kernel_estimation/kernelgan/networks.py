"""KernelGAN's generator and discriminator, N independent copies stacked on a leading image dimension.

As the official code (sefibk/KernelGAN networks.py):

- G: deep linear, no bias: convs 7x7 (1->64), 5x5, 3x3, 1x1, 1x1 (64->64), 1x1 (64->1) with
  stride 2 on the last; colour channels go through it as a batch (one kernel for R, G and B);
  xavier-normal init with gain 0.1. A 64x64 crop gives 26x26.
- D: spectral-norm conv 7x7 (3->64, bias), 5 x [SN conv 1x1, BatchNorm, ReLU], SN conv 1x1
  (64->1), sigmoid. A 26x26 input gives a 20x20 map. Its effective init is PyTorch's default conv
  init (uniform +-1/sqrt(fan_in)) with zero biases and BatchNorm weights N(1, 0.02): the official
  `weights_init_D` calls xavier on the `weight` attribute that spectral norm recomputes from
  `weight_orig` at every forward, so only its bias and BatchNorm settings take effect.
  The first and hidden convolutions' biases are not kept: the BatchNorm after each hidden layer
  subtracts the batch mean, so a bias before it cancels exactly (no effect, zero gradient).

Image n of a stack only ever meets its own weights, spectral-norm vectors and BatchNorm
statistics, so the stack is N separate KernelGANs computed together.

G is linear, so G(x) is one stride-2 correlation with a 13x13 kernel (KernelGAN issue #31). The
collapsed form builds that kernel from G's weights (differentiably) and applies it once; the
literal form runs the six convolutions. Both give the same outputs and weight gradients.
"""
from __future__ import annotations

import math
from typing import Literal, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from realsr_fast import ops

GForm = Literal["collapsed", "literal"]

G_STRUCTURE = (7, 5, 3, 1, 1, 1)
G_CHANNELS = 64
G_GAIN = 0.1
G_KERNEL_SIZE = sum(G_STRUCTURE) - len(G_STRUCTURE) + 1  # 13
D_CHANNELS = 64
D_KERNEL_SIZE = 7
D_HIDDEN_LAYERS = 5
BATCHNORM_EPS = 1e-5
SPECTRAL_NORM_EPS = 1e-12


def _g_shapes() -> list[tuple[int, int, int]]:
    """(out, in, k) of every G layer."""
    channels = [1] + [G_CHANNELS] * (len(G_STRUCTURE) - 1) + [1]
    return [(channels[i + 1], channels[i], k) for i, k in enumerate(G_STRUCTURE)]


def generator_init(gen: torch.Generator) -> list[torch.Tensor]:
    """One image's G weights `(out, in, k, k)`, xavier-normal with gain 0.1, drawn from `gen` (CPU)."""
    weights = []
    for out_ch, in_ch, k in _g_shapes():
        std = G_GAIN * math.sqrt(2.0 / (in_ch * k * k + out_ch * k * k))
        weights.append(torch.randn(out_ch, in_ch, k, k, generator=gen) * std)
    return weights


def discriminator_init(gen: torch.Generator) -> dict[str, torch.Tensor]:
    """One image's D parameters and spectral-norm vectors, drawn from `gen` (CPU).

    The five hidden 1x1 layers are stacked on one axis so they can be processed together.
    Weights are the matrices spectral norm works on: first `(64, 147)`, hidden `(5, 64, 64)`,
    last `(1, 64)`; the last layer's bias `(1,)` (the others cancel in BatchNorm); BatchNorm
    `(5, 64)`; spectral-norm u vectors `(64,)`, `(5, 64)`, `(1,)`.
    """
    fan_first = 3 * D_KERNEL_SIZE**2

    def uniform(*shape: int) -> torch.Tensor:  # PyTorch's default conv init, bound 1/sqrt(fan_in)
        bound = 1.0 / math.sqrt(shape[-1])
        return torch.rand(*shape, generator=gen) * (2 * bound) - bound

    def unit(*shape: int) -> torch.Tensor:
        return F.normalize(torch.randn(*shape, generator=gen), dim=-1, eps=SPECTRAL_NORM_EPS)

    params = {
        "w_first": uniform(D_CHANNELS, fan_first),
        "w_hidden": torch.stack([uniform(D_CHANNELS, D_CHANNELS) for _ in range(D_HIDDEN_LAYERS)]),
        "w_last": uniform(1, D_CHANNELS),
        "b_last": torch.zeros(1),
        "bn_weight": 1.0 + 0.02 * torch.randn(D_HIDDEN_LAYERS, D_CHANNELS, generator=gen),
        "bn_bias": torch.zeros(D_HIDDEN_LAYERS, D_CHANNELS),
    }
    params.update(u_first=unit(D_CHANNELS), u_hidden=unit(D_HIDDEN_LAYERS, D_CHANNELS), u_last=unit(1))
    return params


def _stacked(per_image: Sequence[Sequence[torch.Tensor]], index: int) -> nn.Parameter:
    return nn.Parameter(torch.stack([tensors[index] for tensors in per_image]))


class _StridedCorrelation(torch.autograd.Function):
    """Colours `(3, N, H, W)` correlated with kernels `(N, k, k)` at stride 2: `(3, N, h, w)`.

    The same as the grouped `F.conv2d`, with the kernel's gradient from the compiled
    `ops.correlation_kernel_grad` (several times faster on the CPU than the convolution backward
    for these small maps and large kernels). The input (image crops) gets no gradient.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
        if ctx.needs_input_grad[0]:
            raise NotImplementedError("_StridedCorrelation gives no gradient for its input")
        ctx.save_for_backward(x)
        return F.conv2d(x, kernel[:, None], stride=2, groups=kernel.shape[0])

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[None, torch.Tensor]:
        (x,) = ctx.saved_tensors
        return None, ops.correlation_kernel_grad(x, grad, 2, G_KERNEL_SIZE)


class BatchedGenerator(nn.Module):
    """N deep linear generators; `weights[l]` is `(N, out, in, k, k)`."""

    def __init__(self, per_image: Sequence[Sequence[torch.Tensor]]):
        """`per_image`: for each image the list of `generator_init` weights."""
        super().__init__()
        self.weights = nn.ParameterList([_stacked(per_image, i) for i in range(len(G_STRUCTURE))])

    @property
    def n(self) -> int:
        return self.weights[0].shape[0]

    def kernel(self) -> torch.Tensor:
        """The `(N, 13, 13)` correlation kernels G imitates: G(x)[i, j] = sum k[u, v] x[2i+u, 2j+v].

        k[u, v] is the derivative of output pixel (0, 0) by input pixel (u, v), so it is found by
        sending a delta at that output back through the layers instead of the official forward
        delta through 19x19 maps. Each layer's transposed convolution is one batched matrix
        product (every input pixel's contribution to every output window) and a `fold` summing
        the overlapping windows: for these tiny maps far cheaper than grouped convolutions.
        """
        n = self.n
        grad = torch.ones(n, 1, 1, dtype=self.weights[0].dtype, device=self.weights[0].device)
        size = 1
        for w in reversed(self.weights):
            _, out_ch, in_ch, k, _ = w.shape
            # (N, size^2, in*k*k) in this order so that w's gradient comes out contiguous.
            windows = grad.transpose(1, 2) @ w.reshape(n, out_ch, in_ch * k * k)
            size += k - 1
            grad = F.fold(windows.transpose(1, 2), size, k).reshape(n, in_ch, size * size)
        return grad.reshape(n, G_KERNEL_SIZE, G_KERNEL_SIZE)

    def kernel_by_delta(self) -> torch.Tensor:
        """The same kernels `(N, 13, 13)` computed as the official `calc_curr_k` (a forward delta, flipped)."""
        n = self.n
        k = torch.ones(1, n, 1, 1, dtype=self.weights[0].dtype, device=self.weights[0].device)
        for index, w in enumerate(self.weights):
            k = F.conv2d(k, w.flatten(0, 1), padding=G_KERNEL_SIZE - 1 if index == 0 else 0, groups=n)
        return k.reshape(n, G_KERNEL_SIZE, G_KERNEL_SIZE).flip([-2, -1])

    def forward(
        self, x: torch.Tensor, form: GForm = "collapsed", kernel: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Down-scale crops.

        Args:
            x: `(N, 3, H, W)`, image n through generator n.
            form: "collapsed" (one strided correlation with `kernel()`) or "literal" (the six
                convolutions, kernel by `kernel_by_delta()` as the official code).
            kernel: collapsed form only: `kernel()` already computed for the current weights
                (reused, with its autograd graph), instead of building it again.

        Returns:
            `(G(x), kernel)`: `(N, 3, (H - 13)//2 + 1, ...)` and `(N, 13, 13)`.
        """
        n = self.n
        h = x.transpose(0, 1)  # (3, N, H, W): colours as the batch, images as groups
        if form == "collapsed":
            kernel = self.kernel() if kernel is None else kernel
            h = _StridedCorrelation.apply(h, kernel)
        elif form == "literal":
            if kernel is not None:
                raise ValueError("the literal form computes G's layers; it takes no precomputed kernel")
            kernel = self.kernel_by_delta()
            last = len(self.weights) - 1
            for index, w in enumerate(self.weights):
                h = F.conv2d(h, w.flatten(0, 1), stride=2 if index == last else 1, groups=n)
        else:
            raise ValueError(f"unknown generator form {form!r}")
        return h.transpose(0, 1), kernel


class BatchedDiscriminator(nn.Module):
    """N patch discriminators with per-image spectral norm and BatchNorm.

    Parameters carry a leading image dimension N (shapes as `discriminator_init`, plus N).
    """

    WEIGHTS = ("w_first", "w_hidden", "w_last")

    def __init__(self, per_image: Sequence[dict[str, torch.Tensor]]):
        """`per_image`: for each image the dict of `discriminator_init`."""
        super().__init__()
        for name in per_image[0]:
            stacked = torch.stack([p[name] for p in per_image])
            if name.startswith("u_"):
                self.register_buffer(name, stacked)
            else:
                self.register_parameter(name, nn.Parameter(stacked))
        # The official D runs one forward while being built (to measure its shave): one power iteration.
        self.normalised_weights(passes=1, grad=False)

    def normalised_weights(self, passes: int, grad: bool = True) -> list[torch.Tensor]:
        """Run `passes` forwards' worth of power iterations; the weights each forward uses.

        Each forward of a spectral-norm layer in training mode takes one power-iteration step
        (v = W^T u / |.|, u = W v / |.|, kept for the next forward) and divides W by
        sigma = u . W v, with u and v held constant for the gradient. The steps do not depend on
        D's input, so the weights of several successive forwards can be made at once.

        Returns:
            For first, hidden and last weights: `(N, passes, ...)`; with `grad=False` detached.
        """
        result = []
        for name in self.WEIGHTS:
            weight = getattr(self, name)
            w = weight if grad else weight.detach()
            u_buffer = getattr(self, "u_" + name[2:])
            u, us, vs = u_buffer, [], []
            with torch.no_grad():
                for _ in range(passes):
                    v = F.normalize((u[..., None, :] @ w)[..., 0, :], dim=-1, eps=SPECTRAL_NORM_EPS)
                    u = F.normalize((w @ v[..., None])[..., 0], dim=-1, eps=SPECTRAL_NORM_EPS)
                    us.append(u)
                    vs.append(v)
                u_buffer.copy_(u)
            u_all, v_all = torch.stack(us, 1), torch.stack(vs, 1)  # (N, passes, ..., out) / (..., in)
            sigma = (u_all * (w[:, None] @ v_all[..., None])[..., 0]).sum(-1)
            result.append(w[:, None] / sigma[..., None, None])
        return result

    def forward(self, x: torch.Tensor, weights: Sequence[torch.Tensor]) -> torch.Tensor:
        """Score inputs `(N, S, 3, h, w)` with `normalised_weights` `(N, S, ...)`: `(N, S, (h-6)*(w-6))` in (0, 1).

        Slot s of image n is one forward of D n with its own BatchNorm statistics.
        """
        n, s = x.shape[:2]
        w_first, w_hidden, w_last = weights

        def per_slot(t: torch.Tensor) -> torch.Tensor:  # (N, ...) -> (N * S, ...) by repeating over slots
            return t[:, None].expand(n, s, *t.shape[1:]).flatten(0, 1)

        # im2col as a strided view and one copy: several times faster than F.unfold on the CPU.
        k = D_KERNEL_SIZE
        # Contiguous first: G's outputs and the crops arrive colour-major, and the window copy
        # below gathers several times faster from (N*S, 3, h, w) memory order.
        windows = x.flatten(0, 1).contiguous().unfold(2, k, 1).unfold(3, k, 1)  # (N*S, 3, h', w', k, k)
        cols = windows.permute(0, 1, 4, 5, 2, 3).reshape(n * s, 3 * k * k, -1)  # (N*S, 147, P)
        # The 7x7 convolution and the first hidden 1x1 follow each other with nothing between, so
        # they act as one (64, 147) matrix (their biases cancel in BatchNorm, see the module doc).
        hidden = w_hidden.unbind(2)  # one gradient stack in the backward, not a zero-filled copy per layer
        first = hidden[0] @ w_first  # (N, S, 64, 147)
        h = cols
        for layer in range(D_HIDDEN_LAYERS):
            w = first if layer == 0 else hidden[layer]
            h = w.flatten(0, 1) @ h
            # Batch statistics of each image and slot: its (N*S*64) channels as BatchNorm's channels.
            h = ops.batchnorm_relu(
                h.reshape(-1, h.shape[-1]),
                per_slot(self.bn_weight[:, layer]).reshape(-1), per_slot(self.bn_bias[:, layer]).reshape(-1),
                BATCHNORM_EPS,
            ).reshape(h.shape)
        h = torch.baddbmm(per_slot(self.b_last)[..., None], w_last.flatten(0, 1), h)
        return torch.sigmoid(h[:, 0]).unflatten(0, (n, s))
