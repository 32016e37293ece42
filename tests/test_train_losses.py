"""Losses, discriminators and VGG features of the trainer, against literal computations."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from realsr_fast.errors import RealSRError
from realsr_fast.models.discriminators import NLayerDiscriminator, VGG128Discriminator, build_discriminator
from realsr_fast.models.vgg import FEATURE_LAYERS, VGGFeatures, build_vgg
from realsr_fast.train.losses import (
    LossWeights,
    PerceptualLoss,
    generator_losses,
    ragan_discriminator_loss,
    ragan_generator_loss,
)


def _bce_literal(logits: np.ndarray, target: float) -> float:
    """Mean of -[t log sigmoid(x) + (1 - t) log(1 - sigmoid(x))], written out."""
    p = 1 / (1 + np.exp(-logits.astype(np.float64)))
    return float(np.mean(-(target * np.log(p) + (1 - target) * np.log(1 - p))))


@pytest.mark.parametrize("shape", [(4, 1, 6, 6), (5, 1)])
def test_ragan_matches_literal_esrgan_formula(rng, shape):
    real, fake = rng.normal(0, 2, shape), rng.normal(1, 2, shape)
    # ESRGAN SRGAN_model.py: G: (cri_gan(real - mean(fake), False) + cri_gan(fake - mean(real), True)) / 2
    g_expected = (_bce_literal(real - fake.mean(), 0) + _bce_literal(fake - real.mean(), 1)) / 2
    # D: (cri_gan(real - mean(fake), True) + cri_gan(fake - mean(real), False)) / 2
    d_expected = (_bce_literal(real - fake.mean(), 1) + _bce_literal(fake - real.mean(), 0)) / 2
    real_t, fake_t = torch.tensor(real, dtype=torch.float32), torch.tensor(fake, dtype=torch.float32)
    assert ragan_generator_loss(real_t, fake_t).item() == pytest.approx(g_expected, rel=1e-5)
    assert ragan_discriminator_loss(real_t, fake_t).item() == pytest.approx(d_expected, rel=1e-5)


def test_ragan_generator_gradient_reaches_fake_only(rng):
    real = torch.tensor(rng.normal(size=(3, 1)), dtype=torch.float32, requires_grad=True)
    fake = torch.tensor(rng.normal(size=(3, 1)), dtype=torch.float32, requires_grad=True)
    generator_losses(torch.rand(3, 3, 8, 8), torch.rand(3, 3, 8, 8), LossWeights(), None, real, fake)["total"].backward()
    assert real.grad is None and fake.grad is not None and fake.grad.abs().sum() > 0


def test_generator_losses_weights_and_psnr_mode(rng):
    sr = torch.tensor(rng.random((2, 3, 16, 16)), dtype=torch.float32)
    hr = torch.tensor(rng.random((2, 3, 16, 16)), dtype=torch.float32)
    real, fake = torch.tensor(rng.normal(size=(2, 1))).float(), torch.tensor(rng.normal(size=(2, 1))).float()
    features = torch.nn.Conv2d(3, 4, 3)
    weights = LossWeights(pixel=0.01, perceptual=1.0, gan=0.005)
    losses = generator_losses(sr, hr, weights, PerceptualLoss(features), real, fake)
    l1 = np.abs(sr.numpy() - hr.numpy()).mean()
    with torch.no_grad():
        fea_l1 = (features(sr) - features(hr)).abs().mean().item()
    assert losses["pixel"].item() == pytest.approx(0.01 * l1, rel=1e-5)
    assert losses["perceptual"].item() == pytest.approx(fea_l1, rel=1e-5)
    assert losses["gan"].item() == pytest.approx(0.005 * ragan_generator_loss(real, fake).item(), rel=1e-6)
    assert losses["total"].item() == pytest.approx(sum(losses[k].item() for k in ("pixel", "perceptual", "gan")), rel=1e-6)
    psnr_mode = generator_losses(sr, hr, LossWeights(pixel=1.0))
    assert set(psnr_mode) == {"pixel", "total"} and psnr_mode["total"].item() == pytest.approx(l1, rel=1e-5)


def test_vgg_slice_is_conv5_4_before_relu_with_imagenet_normalisation(rng):
    net = VGGFeatures.random_for_tests()
    assert len(net.features) == FEATURE_LAYERS and isinstance(net.features[-1], torch.nn.Conv2d)
    convs = [m for m in net.features if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 16 and convs[-1].in_channels == 512  # conv5_4 is VGG19's 16th conv
    assert not any(p.requires_grad for p in net.parameters())
    x = torch.tensor(rng.random((1, 3, 32, 32)), dtype=torch.float32)
    mean, std = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        assert torch.equal(net(x), net.features((x - mean) / std))
        assert net(x).shape == (1, 512, 2, 2) and net(x).min() < 0  # before the ReLU: negatives remain
    again = VGGFeatures.random_for_tests()
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), again.state_dict().values()))


def test_vgg_loads_torchvision_keys_from_a_file(tmp_path, rng):
    from torchvision.models.vgg import cfgs, make_layers

    full = make_layers(cfgs["E"])  # all 37 layers, as torchvision's vgg19.features
    state = {f"features.{k}": torch.tensor(rng.normal(size=v.shape), dtype=torch.float32) for k, v in full.state_dict().items()}
    state["classifier.0.bias"] = torch.zeros(4)
    path = tmp_path / "vgg19-dcbb9e9d.pth"
    torch.save(state, path)
    net = build_vgg(path)
    assert torch.equal(net.features[34].weight, state["features.34.weight"])
    torch.save({"something": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(RealSRError, match="not torchvision's VGG19"):
        build_vgg(tmp_path / "bad.pth")


def test_missing_vgg_weights_name_the_file_and_place(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(RealSRError) as info:
        build_vgg()
    message = str(info.value)
    assert "vgg19-dcbb9e9d.pth" in message and str(tmp_path / "hub" / "checkpoints") in message
    with pytest.raises(RealSRError, match="do not exist"):
        build_vgg(tmp_path / "nowhere.pth")


def _receptive_field(net: torch.nn.Module, size: int) -> int:
    """Side of the input region that the centre output logit depends on (by its gradient)."""
    net = net.eval().double()
    for conv in (m for m in net.modules() if isinstance(m, torch.nn.Conv2d)):
        torch.nn.init.constant_(conv.weight, 0.01)  # positive weights: no cancellation hides a tap
    x = torch.zeros(1, 3, size, size, dtype=torch.float64, requires_grad=True)
    out = net(x)
    out[0, 0, out.shape[2] // 2, out.shape[3] // 2].backward()
    rows = torch.nonzero(x.grad[0].abs().sum(0).sum(1))
    return int(rows.max() - rows.min() + 1)


def test_patchgan_layout_field_and_parameters():
    net = NLayerDiscriminator()
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.stride[0] for c in convs] == [2, 2, 2, 1, 1] and all(c.kernel_size == (4, 4) for c in convs)
    assert [c.out_channels for c in convs] == [64, 128, 256, 512, 1]
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules()) == 3
    # pix2pix's "basic" D (2.765 M): biased first and last convs, bias-free convs before BatchNorm
    expected = (3 * 64 * 16 + 64) + 64 * 128 * 16 + 2 * 128 + 128 * 256 * 16 + 2 * 256 + 256 * 512 * 16 + 2 * 512 + (512 * 16 + 1)
    assert sum(p.numel() for p in net.parameters()) == expected
    assert _receptive_field(NLayerDiscriminator(), 160) == 70
    assert net(torch.rand(2, 3, 128, 128)).shape == (2, 1, 14, 14)


def test_vgg128_discriminator_shapes():
    net = build_discriminator("vgg128", 16)
    assert isinstance(net, VGG128Discriminator)
    assert net(torch.rand(2, 3, 128, 128)).shape == (2, 1)
    with pytest.raises(RealSRError, match="128x128"):
        net(torch.rand(2, 3, 64, 64))
    with pytest.raises(RealSRError, match="patchgan"):
        build_discriminator("unet")
