"""The flow kernel prior, the KernelGAN-FKP generator, the yardstick's parts and seed agreement."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from realsr_fast.kernel_estimation.confidence import IDENTICAL_DB, kernel_agreement_db
from realsr_fast.kernel_estimation.evaluation import yardstick
from realsr_fast.kernel_estimation.gaussians import anisotropic_gaussian, isotropic_gaussian
from realsr_fast.kernel_estimation.kernelgan import flow
from realsr_fast.kernel_estimation.kernelgan.fkp import LATENT_RADIUS, FlowGenerator, latent_init
from realsr_fast.kernel_estimation.kernelgan.training import train_kernelgan
from realsr_fast.ops import degrade


def _moments(k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    grid = np.stack(np.meshgrid(np.arange(k.shape[0]), np.arange(k.shape[1]), indexing="ij"), -1).astype(float)
    centre = np.einsum("hw,hwi->i", k, grid) / k.sum()
    d = grid - centre
    return centre, np.einsum("hw,hwi,hwj->ij", k, d, d) / k.sum()


def test_training_kernels_are_the_synthetic_family_without_its_noise(rng):
    seed = int(rng.integers(1 << 30))
    lambdas = np.random.default_rng(seed).uniform(0.6, 5.0, size=2)
    theta = np.random.default_rng(seed).uniform(0, np.pi, size=3)[2]
    noisy = anisotropic_gaussian(np.random.default_rng(seed))
    noise = np.random.default_rng(seed).uniform(size=3 + 121)[3:] * 0.5 - 0.25  # the noise draws that follow
    ours = flow.gaussian_kernels(torch.tensor(lambdas)[None], torch.tensor([theta]))[0].numpy()
    expected = ours * (1 + noise.reshape(11, 11))
    np.testing.assert_allclose(expected / expected.sum(), noisy, rtol=1e-10)


def test_decode_inverts_the_flow_and_gives_valid_kernels(rng):
    model = flow.load_flow()
    kernels = flow.random_kernels(16, torch.Generator().manual_seed(int(rng.integers(1 << 30))))
    logits = model.to_flow_space(kernels).float()
    latent = logits
    for layer in model.layers:
        latent = layer(latent)[0]
    back = model.decode(latent)
    np.testing.assert_allclose(back.numpy(), kernels.numpy(), atol=2e-3)  # dequantisation noise is 1/720
    samples = model.decode(torch.from_numpy(rng.standard_normal((64, flow.DIM))).float())
    assert samples.min() >= 0
    np.testing.assert_allclose(samples.sum(dim=(1, 2)).numpy(), 1, atol=1e-5)


def test_prior_samples_look_like_the_training_family(rng):
    """Decoded random latents: centred where KernelGAN wants the mass, widths inside the family's range."""
    samples = flow.load_flow().decode(torch.from_numpy(rng.standard_normal((64, flow.DIM))).float()).double().numpy()
    for k in samples:
        centre, covariance = _moments(k)
        np.testing.assert_allclose(centre, 5.5, atol=0.5)
        variances = np.linalg.eigvalsh(covariance)
        assert 0.15 < variances[0] and variances[1] < 7.5


def test_prior_prefers_its_family_to_noise(rng):
    model = flow.load_flow()
    gen = torch.Generator().manual_seed(int(rng.integers(1 << 30)))
    inside = model.log_prob(model.to_flow_space(flow.random_kernels(32, gen), gen).float())
    blobs = torch.from_numpy(rng.random((32, 11, 11)))
    outside = model.log_prob(model.to_flow_space(blobs / blobs.sum(dim=(1, 2), keepdim=True), gen).float())
    assert inside.min() > outside.max()


def test_flow_generator_correlates_with_the_decoded_kernel_and_stays_on_the_sphere(rng):
    gens = [torch.Generator().manual_seed(int(s)) for s in rng.integers(1 << 30, size=2)]
    g = FlowGenerator([latent_init(gen) for gen in gens])
    x = torch.from_numpy(rng.random((2, 3, 64, 64))).float()
    out, kernel = g(x)
    decoded = g.flow.decode(g.latent).detach()
    assert kernel.shape == (2, 13, 13) and out.shape == (2, 3, 26, 26)
    for n in range(2):
        windows = x[n].unfold(1, 13, 2).unfold(2, 13, 2)[..., 1:12, 1:12]  # the 11x11 taps inside 13x13
        expected = torch.einsum("chwuv,uv->chw", windows, decoded[n])
        torch.testing.assert_close(out[n].detach(), expected, atol=1e-5, rtol=1e-5)
    out.square().sum().backward()
    assert g.latent.grad is not None and g.latent.grad.abs().sum() > 0
    with torch.no_grad():
        g.latent.mul_(3.0)
    g.project()
    np.testing.assert_allclose(g.latent.norm(dim=1).detach().numpy(), LATENT_RADIUS, rtol=1e-6)


def test_fkp_training_moves_the_latent_and_keeps_kernels_valid(rng):
    images = [rng.random((96, 96, 3)) for _ in range(2)]
    result = train_kernelgan(images, [1, 2], iterations=5, prior="fkp")
    kernels = result.kernels.numpy()
    assert result.constrained == [True, True]
    np.testing.assert_allclose(kernels.sum(axis=(1, 2)), 1, atol=1e-5)
    assert kernels.min() >= 0 and np.abs(kernels[:, 0]).max() == 0  # the 11x11 prior sits inside 13x13


def test_isotropic_gaussian_has_the_asked_width_and_centre(rng):
    sigma = float(rng.uniform(0.8, 2.0))
    centre, covariance = _moments(isotropic_gaussian(sigma, 31))
    np.testing.assert_allclose(centre, 15.5)
    np.testing.assert_allclose(np.diag(covariance), sigma**2, rtol=1e-6)


def test_best_constant_finds_the_width_the_set_was_made_with(rng):
    """A set blurred with one isotropic kernel: the search must return that width."""
    sigma = float(rng.choice(yardstick.CONSTANT_SIGMAS[10:30]))
    truth = isotropic_gaussian(sigma, 11)
    cases = []
    for i in range(2):
        hr = torch.from_numpy(rng.random((1, 3, 48, 48))).float()
        hr = torch.nn.functional.avg_pool2d(hr, 3, 1, 1)  # some structure at several scales
        lr = degrade(hr, torch.from_numpy(truth).float(), 2, padding="symmetric", quantize=True)
        lr_u8 = (lr[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        cases.append(yardstick.Case(f"c{i}", hr, truth, lr_u8))
    assert yardstick.best_constant_sigma(cases) == pytest.approx(sigma)


def test_seed_agreement_falls_as_kernels_part(rng):
    image = rng.random((40, 40, 3))
    a = isotropic_gaussian(1.2)
    assert kernel_agreement_db(image, [a, a.copy()]) == IDENTICAL_DB
    near = kernel_agreement_db(image, [a, isotropic_gaussian(1.3)])
    far = kernel_agreement_db(image, [a, isotropic_gaussian(2.0)])
    worst = kernel_agreement_db(image, [a, isotropic_gaussian(1.3), yardstick.isotropic_gaussian(2.0)])
    assert far < near < IDENTICAL_DB and worst == pytest.approx(far)


def test_kernels_command_with_the_prior_reports_seed_agreement(tmp_path, rng):
    import json

    from PIL import Image

    from realsr_fast.cli import main

    src, out = tmp_path / "photos", tmp_path / "out"
    src.mkdir()
    Image.fromarray((rng.random((96, 100, 3)) * 255).astype(np.uint8)).save(src / "a.png")
    assert main(["kernels", str(src), "-o", str(out), "--kernel-iters", "3", "--seeds", "2", "--prior", "fkp", "--quiet"]) == 0
    report = json.loads((out / "report.json").read_text())["a"]
    assert report["prior"] == "fkp" and report["runs"] == 2
    assert report["seed_agreement_db"] > 0 and report["trusted"] == (report["seed_agreement_db"] >= 45.0)
    assert np.load(out / "a" / "a_kernel_x2.npy").shape == (17, 17)
