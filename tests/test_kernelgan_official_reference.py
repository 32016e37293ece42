"""KernelGAN against independent re-implementations of the official code (sefibk/KernelGAN).

The references here are written from the official definitions (util.py, data.py, networks.py,
loss.py, kernelGAN.py) with stock numpy/scipy/torch.nn pieces; they share no code with
`realsr_fast.kernel_estimation.kernelgan` except the inputs they are given.
"""
from __future__ import annotations

import numpy as np
import scipy.signal
import torch
import torch.nn.functional as F
from torch import nn

from realsr_fast.data.imresize import imresize
from realsr_fast.kernel_estimation.kernelgan import training as kernelgan
from realsr_fast.kernel_estimation.kernelgan.crops import (
    crop_corners,
    gradient_map,
    prepare_image,
    probability_map,
)
from realsr_fast.kernel_estimation.kernelgan.networks import (
    BatchedDiscriminator,
    BatchedGenerator,
    discriminator_init,
    generator_init,
)

_Adam = torch.optim.Adam  # the stock optimiser, kept before the spy below replaces it during a test


# ---------------------------------------------------------------- util.py: crop probabilities
def _pad_edges(im, edge):
    out = np.zeros_like(im)
    out[edge:-edge, edge:-edge] = im[edge:-edge, edge:-edge]
    return out


def _clip_extreme(im, percent):
    ordered = np.sort(im.flatten())
    pivot = int(percent * len(ordered))
    v_min = ordered[pivot]
    v_max = ordered[pivot + 1] if ordered[pivot + 1] > v_min else v_min + 10e-6
    return np.clip(im, v_min, v_max) - v_min


def _official_gradient_map(im, window=5, percent=0.97):
    gx, gy = np.gradient(np.dot(im, [0.299, 0.587, 0.114]))
    gmag, gx, gy = np.sqrt(gx**2 + gy**2), np.abs(gx), np.abs(gy)
    gx_pad, gy_pad, gmag = _pad_edges(gx, window), _pad_edges(gy, window), _pad_edges(gmag, window)
    lm_x, lm_y = _clip_extreme(gx_pad, percent), _clip_extreme(gy_pad, percent)
    grads_comb = lm_x / lm_x.sum() + lm_y / lm_y.sum() + gmag / gmag.sum()  # gmag unclipped, as upstream
    loss_map = scipy.signal.convolve2d(grads_comb, np.ones((window, window)), "same") / window**2
    return loss_map / np.mean(loss_map)


def _official_probability_map(loss_map, crop):
    blurred = scipy.signal.convolve2d(loss_map, np.ones([crop // 2, crop // 2]), "same") / (crop // 2) ** 2
    prob_map = _pad_edges(blurred, crop // 2)
    return prob_map.flatten() / prob_map.sum()


def _photo(rng, height, width):
    """Blocks of random colour (edges of every strength) plus fine noise, uint8."""
    small = rng.random((height // 6 + 2, width // 6 + 2, 3))
    big = np.kron(small, np.ones((6, 6, 1)))[:height, :width]
    return (np.clip(big + 0.05 * rng.standard_normal(big.shape), 0, 1) * 255).astype(np.uint8)


def test_gradient_and_probability_maps_equal_the_official_functions(rng):
    im = prepare_image(_photo(rng, 131, 117))
    official = _official_gradient_map(im)
    np.testing.assert_allclose(gradient_map(im), official, rtol=1e-9, atol=1e-12)
    for crop in (26, 64):
        np.testing.assert_allclose(
            probability_map(official, crop), _official_probability_map(official, crop), rtol=1e-9, atol=1e-15
        )


def test_crop_centres_are_drawn_from_the_official_probabilities(rng):
    """Same generator, same draws: a sampler that ignores the maps (uniform crops) fails here."""
    im = prepare_image(_photo(rng, 140, 150))
    seed = int(rng.integers(1 << 30))
    g_corners, d_corners = crop_corners(im, 300, np.random.default_rng(seed))

    small = imresize(torch.from_numpy(np.ascontiguousarray(im.transpose(2, 0, 1))), 0.5).numpy().transpose(1, 2, 0)
    # data.py: nn_interpolation (PIL NEAREST x2 on an integer factor is a plain repeat)
    prob_g = _official_probability_map(_official_gradient_map(small).repeat(2, 0).repeat(2, 1), 64)
    prob_d = _official_probability_map(_official_gradient_map(im), 26)
    draw = np.random.default_rng(seed)
    centres_g = draw.choice(len(prob_g), size=300, p=prob_g)
    centres_d = draw.choice(len(prob_d), size=300, p=prob_d)
    rows, cols = im.shape[:2]
    for centres, size, corners in ((centres_g, 64, g_corners), (centres_d, 26, d_corners)):
        row, col = centres // cols, centres % cols  # data.py get_top_left
        top = np.minimum(np.maximum(0, row - size // 2), rows - size)
        left = np.minimum(np.maximum(0, col - size // 2), cols - size)
        np.testing.assert_array_equal(corners, np.stack([top - top % 2, left - left % 2], 1))


# ---------------------------------------------------- networks.py / loss.py / kernelGAN.py
_OFFICIAL_BICUBIC = np.array(  # loss.py DownScaleLoss.bicubic_k, typed in from the upstream file
    [
        [0.0001373291015625, 0.0004119873046875, -0.0013275146484375, -0.0050811767578125],
        [0.0004119873046875, 0.0012359619140625, -0.0039825439453125, -0.0152435302734375],
        [-0.0013275146484375, -0.0039825439453125, 0.0128326416015625, 0.0491180419921875],
        [-0.0050811767578125, -0.0152435302734375, 0.0491180419921875, 0.1880035400390625],
    ]
)
_OFFICIAL_BICUBIC = np.block([[_OFFICIAL_BICUBIC, _OFFICIAL_BICUBIC[:, ::-1]], [_OFFICIAL_BICUBIC[::-1], _OFFICIAL_BICUBIC[::-1, ::-1]]])


def _penalty_mask(k_size=13, scale=30.0):
    z = np.arange(-k_size // 2 + 1, k_size // 2 + 1)
    line = np.exp(-(z**2) / (2 * k_size**2)) / np.sqrt(2 * np.pi * k_size**2)
    mask = np.outer(line, line)
    mask = 1 - mask / mask.max()
    margin = (k_size - (k_size // 2 + k_size % 2)) // 2 - 1
    mask[margin:-margin, margin:-margin] = 0
    return scale * mask


class _OfficialG(nn.Module):
    """networks.Generator's weights and kernelGAN.calc_curr_k.

    The forward applies curr_k as one stride-2 correlation: G is linear, so this is the same map
    as its six convolutions (KernelGAN issue #31; tests/test_kernelgan_networks.py checks it) at a
    fraction of the float64 cost, and the weights' gradients still flow through calc_curr_k.
    """

    def __init__(self, weights):
        super().__init__()
        self.weights = nn.ParameterList([nn.Parameter(w.clone()) for w in weights])

    def curr_k(self):
        k = torch.ones(1, 1, 1, 1, dtype=torch.float64)
        for i, w in enumerate(self.weights):
            k = F.conv2d(k, w, padding=12) if i == 0 else F.conv2d(k, w)
        return k.squeeze().flip([0, 1])

    def forward(self, x):  # colours as the batch (swap_axis)
        return F.conv2d(x.transpose(0, 1), self.curr_k()[None, None], stride=2).transpose(0, 1)


def _sn(conv, weight, u):
    conv.weight.data = weight.reshape(conv.weight.shape).clone()
    conv.bias.data.zero_()
    conv = nn.utils.spectral_norm(conv)
    conv.weight_u.data = u.clone()
    return conv


class _OfficialD(nn.Module):
    """networks.Discriminator with D_n_layers=7, from one image's `discriminator_init` values."""

    def __init__(self, p):
        super().__init__()
        self.first = _sn(nn.Conv2d(3, 64, 7, bias=True), p["w_first"], p["u_first"])
        self.hidden, self.bns = nn.ModuleList(), nn.ModuleList()
        for i in range(5):
            self.hidden.append(_sn(nn.Conv2d(64, 64, 1, bias=True), p["w_hidden"][i], p["u_hidden"][i]))
            bn = nn.BatchNorm2d(64)
            bn.weight.data, bn.bias.data = p["bn_weight"][i].clone(), p["bn_bias"][i].clone()
            self.bns.append(bn)
        self.last = _sn(nn.Conv2d(64, 1, 1, bias=True), p["w_last"], p["u_last"])
        self.last.bias.data = p["b_last"].clone()
        self.double()
        self(torch.ones(1, 3, 26, 26, dtype=torch.float64))  # the shave-measuring forward upstream runs

    def forward(self, x):
        h = self.first(x)
        for conv, bn in zip(self.hidden, self.bns):
            h = torch.relu(bn(conv(h)))
        return torch.sigmoid(self.last(h))


def _official_constraints(g_input, g_pred, k, lambdas):
    bicubic = torch.from_numpy(_OFFICIAL_BICUBIC).expand(3, 3, 8, 8)
    down = F.conv2d(g_input, bicubic, stride=2, padding=3)[..., 3:29, 3:29]  # resize_tensor_w_kernel + shave_a2b
    terms = {
        "bicubic": F.mse_loss(g_pred, down),
        "sum2one": (1 - k.sum()).abs(),
        "boundaries": (k * torch.from_numpy(_penalty_mask()).float().double()).abs().mean(),  # map2tensor: float32
        "centralized": F.mse_loss(
            torch.stack([k.sum(1) @ torch.arange(13.0, dtype=k.dtype), k.sum(0) @ torch.arange(13.0, dtype=k.dtype)])
            / k.sum(),
            torch.tensor([6.5, 6.5], dtype=k.dtype),
        ),
        "sparse": (k.abs() ** 0.2).mean(),
    }
    total = (
        terms["bicubic"] * lambdas["bicubic"] + terms["sum2one"] * 0.5 + terms["boundaries"] * 0.5
        + terms["centralized"] * lambdas["centralized"] + terms["sparse"] * lambdas["sparse"]
    )
    return total, terms


def _close(ours, ref, msg=None):
    """float64 agreement, up to the rounding of different but equivalent operation orders."""
    ref = ref.detach()
    torch.testing.assert_close(ours.detach(), ref, rtol=1e-8, atol=1e-10 * float(ref.abs().max()) + 1e-300, msg=msg)


LAMBDAS = {"bicubic": 0.7, "centralized": 1.3, "sparse": 2.1}  # distinct: a weight on the wrong term shows


class _Recorder:
    """Spies on train_kernelgan: its networks, each optimiser step's gradients, G's loss terms."""

    def __init__(self, monkeypatch, g_weights, d_params, g_corners, d_corners, noise):
        self.g_net = self.d_net = None
        self.g_grads, self.d_grads, self.terms = [], [], []
        rec = self

        class G(BatchedGenerator):
            def __init__(self, per_image):
                super().__init__(per_image)
                rec.g_net = self

        class D(BatchedDiscriminator):
            def __init__(self, per_image):
                super().__init__(per_image)
                rec.d_net = self

        class Adam(_Adam):
            def step(self, closure=None):
                grads = [p.grad.clone() for group in self.param_groups for p in group["params"]]
                is_g = self.param_groups[0]["params"][0] is rec.g_net.weights[0]
                (rec.g_grads if is_g else rec.d_grads).append(grads)
                return super().step(closure)

        class Schedule(kernelgan.ConstraintSchedule):
            @classmethod
            def start(cls, n, device, *args):
                s = super().start(n, device, *args)
                s.lambda_bicubic = s.lambda_bicubic * 0 + LAMBDAS["bicubic"]
                s.lambda_centralized = s.lambda_centralized * 0 + LAMBDAS["centralized"]
                s.lambda_sparse = s.lambda_sparse * 0 + LAMBDAS["sparse"]
                return s

            def weighted_sum(self, loss_bicubic, constraints):
                rec.terms.append({"bicubic": loss_bicubic.detach().clone(), **{k: v.detach().clone() for k, v in constraints.items()}})
                return super().weighted_sum(loss_bicubic, constraints)

            def update(self, iteration, loss_bicubic):
                pass  # weights held at LAMBDAS (the schedule has its own test against the official Learner)

        class Noise:
            def __init__(self, *args):
                self.it = iter(noise)

            def next(self):
                return next(self.it)[None]

        monkeypatch.setattr(kernelgan, "BatchedGenerator", G)
        monkeypatch.setattr(kernelgan, "BatchedDiscriminator", D)
        monkeypatch.setattr(kernelgan, "ConstraintSchedule", Schedule)
        monkeypatch.setattr(kernelgan, "_NoiseStreams", Noise)
        monkeypatch.setattr(kernelgan.torch.optim, "Adam", Adam)
        monkeypatch.setattr(kernelgan, "generator_init", lambda gen: [w.clone() for w in g_weights])
        monkeypatch.setattr(kernelgan, "discriminator_init", lambda gen: {k: v.clone() for k, v in d_params.items()})
        monkeypatch.setattr(kernelgan, "crop_corners", lambda im, iterations, rng: (g_corners, d_corners))


def test_three_iterations_match_the_official_training_step_in_float64(rng, monkeypatch):
    iterations = 3  # Adam's betas only show from the second step on
    im = prepare_image(_photo(rng, 120, 130))
    seed = int(rng.integers(1 << 30))
    g_weights = [w.double() * 20 for w in generator_init(torch.Generator().manual_seed(seed))]  # sum(k) ~ 1, as trained
    d_params = {k: v.double() for k, v in discriminator_init(torch.Generator().manual_seed(seed + 1)).items()}
    limits = np.array(im.shape[:2])
    g_corners = (rng.integers(0, limits - 64, (iterations, 2)) // 2 * 2).astype(np.int64)
    d_corners = (rng.integers(0, limits - 26, (iterations, 2)) // 2 * 2).astype(np.int64)
    noise = torch.randn(iterations, 2, 3, 26, 26, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    rec = _Recorder(monkeypatch, g_weights, d_params, g_corners, d_corners, noise)
    result = kernelgan.train_kernelgan([im], [seed], iterations=iterations, dtype=torch.float64)

    G, D = _OfficialG(g_weights), _OfficialD(d_params)
    opt_g = _Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = _Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    image = torch.from_numpy(im.transpose(2, 0, 1).copy())
    for it in range(iterations):
        (gt, gl), (dt, dl) = g_corners[it], d_corners[it]
        g_input = (image[:, gt : gt + 64, gl : gl + 64] * 2 - 1)[None]
        d_real_01 = image[:, dt : dt + 26, dl : dl + 26] + noise[it, 0] / 255.0  # data.py: noise before im2tensor
        d_input = (d_real_01 * 2 - 1)[None]

        opt_g.zero_grad()
        g_pred = G(g_input)
        k = G.curr_k()
        total, terms = _official_constraints(g_input, g_pred, k, LAMBDAS)
        loss_g = F.l1_loss(D(g_pred), torch.ones(1, 1, 20, 20, dtype=torch.float64)) + total
        loss_g.backward()
        for name, value in terms.items():
            _close(rec.terms[it][name][0], value.detach(), msg=f"{name} at {it}")
        for ours, ref in zip(rec.g_grads[it], [w.grad for w in G.weights]):
            _close(ours[0], ref)
        opt_g.step()

        opt_d.zero_grad()
        d_pred_real = D(d_input)
        g_output = G(g_input)
        d_pred_fake = D((g_output + noise[it, 1] / 255.0).detach())
        loss_d = (F.l1_loss(d_pred_fake, torch.zeros_like(d_pred_fake)) + F.l1_loss(d_pred_real, torch.ones_like(d_pred_real))) * 0.5
        loss_d.backward()
        w_first, w_hidden, w_last, b_last, bn_weight, bn_bias = rec.d_grads[it]
        _close(w_first[0], D.first.weight_orig.grad.reshape(64, 147))
        _close(w_hidden[0], torch.stack([c.weight_orig.grad.reshape(64, 64) for c in D.hidden]))
        _close(w_last[0], D.last.weight_orig.grad.reshape(1, 64))
        _close(b_last[0], D.last.bias.grad)
        _close(bn_weight[0], torch.stack([bn.weight.grad for bn in D.bns]))
        _close(bn_bias[0], torch.stack([bn.bias.grad for bn in D.bns]))
        # the biases the project drops: BatchNorm right after them cancels them exactly
        for conv in [D.first, *D.hidden]:
            assert conv.bias.grad.abs().max() < 1e-12
        opt_d.step()

    _close(result.kernels[0], k.detach())  # curr_k of the last G step
    for ours, ref in zip(rec.g_net.weights, G.weights):
        _close(ours[0].detach(), ref.detach())
    _close(rec.d_net.w_first[0], D.first.weight_orig.reshape(64, 147))
    _close(rec.d_net.w_hidden[0], torch.stack([c.weight_orig.reshape(64, 64) for c in D.hidden]))
    _close(rec.d_net.bn_weight[0], torch.stack([bn.weight for bn in D.bns]))
    _close(rec.d_net.u_first[0], D.first.weight_u)  # power iterations: one per forward
