"""`Trainer.optimise` against a hand-written ESRGAN step (xinntao/BasicSR-era `SRGAN_model.py`).

The reference writes the RaGAN terms as explicit log-sigmoid cross-entropies, weights each term
itself, and sets each step's learning rate from the milestones by hand; only the networks (deep
copies of the trainer's G, D and VGG features) and the stock Adam are shared. Every weight,
learning rate, beta and milestone is distinct and not 1, so a weight wired to the wrong term,
swapped RaGAN arguments or a schedule that does nothing all change a number compared here.
"""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from realsr_fast.train.config import load_config
from realsr_fast.train.distributed import DistContext
from realsr_fast.train.trainer import Trainer

SMOKE = Path(__file__).resolve().parent.parent / "configs" / "smoke.yaml"
W_PIXEL, W_PERCEPTUAL, W_GAN = 0.3, 0.7, 0.11
LR_G, LR_D, BETAS, MILESTONES, GAMMA = 3e-4, 7e-4, (0.8, 0.95), (1, 2), 0.3


def _bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    """-[t log sigmoid(x) + (1 - t) log(1 - sigmoid(x))], averaged."""
    return -(target * F.logsigmoid(logits) + (1 - target) * F.logsigmoid(-logits)).mean()


def _lr(base: float, step: int) -> float:
    """MultiStepLR: the base rate times gamma for every milestone already reached."""
    return base * GAMMA ** sum(step >= m for m in MILESTONES)


def _reference_step(G, D, vgg, opt_g, opt_d, hr, lr, step):
    """ESRGAN's optimize_parameters with RaGAN, l_pix_w, l_fea_w, l_gan_w: losses and gradients."""
    for group in opt_g.param_groups:
        group["lr"] = _lr(LR_G, step)
    for group in opt_d.param_groups:
        group["lr"] = _lr(LR_D, step)
    D.requires_grad_(False)
    opt_g.zero_grad()
    sr = G(lr)
    pred_g_fake = D(sr)
    pred_d_real = D(hr).detach()
    l_pix = W_PIXEL * (sr - hr).abs().mean()
    l_fea = W_PERCEPTUAL * (vgg(sr) - vgg(hr).detach()).abs().mean()
    l_gan = W_GAN * (_bce(pred_d_real - pred_g_fake.mean(), 0.0) + _bce(pred_g_fake - pred_d_real.mean(), 1.0)) / 2
    (l_pix + l_fea + l_gan).backward()
    g_grads = [p.grad.clone() for p in G.parameters()]
    opt_g.step()

    D.requires_grad_(True)
    opt_d.zero_grad()
    pred_d_real = D(hr)
    pred_d_fake = D(sr.detach())
    l_d = (_bce(pred_d_real - pred_d_fake.mean(), 1.0) + _bce(pred_d_fake - pred_d_real.mean(), 0.0)) / 2
    l_d.backward()
    d_grads = [p.grad.clone() for p in D.parameters()]
    opt_d.step()
    losses = {"pixel": l_pix, "perceptual": l_fea, "gan": l_gan, "total": l_pix + l_fea + l_gan, "d": l_d,
              "d_real": pred_d_real.mean(), "d_fake": pred_d_fake.mean()}
    return {k: v.detach() for k, v in losses.items()}, g_grads, d_grads


def _close_all(ours, refs, what):
    """Gradients agree up to float32 rounding, measured against the network's largest gradient.

    Some gradients are zero in exact arithmetic (RaGAN does not change when D's last bias shifts
    every logit alike) and only rounding noise in float32; a relative check per tensor would
    compare two noises.
    """
    scale = max(float(r.abs().max()) for r in refs)
    for a, b in zip(ours, refs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4 * scale, msg=lambda m: f"{what}: {m}")


def _exact_zero_gradient(grads_per_step, index):
    """Whether parameter `index` only ever got rounding noise (see `_close_all`): Adam turns that
    noise into full learning-rate steps of either sign, so its value is not comparable."""
    return all(float(g[index].abs().max()) < 1e-6 * max(float(x.abs().max()) for x in g) for g in grads_per_step)


def test_three_steps_match_hand_written_esrgan_losses(tmp_path, rng):
    overrides = [f"run.out={tmp_path}", "generator.nf=8", "generator.gc=8", "discriminator.ndf=4",
                 "discriminator.n_layers=2", "val.hr=null",
                 "run.tensorboard=false", "run.progress=false",
                 f"loss.pixel_weight={W_PIXEL}", f"loss.perceptual_weight={W_PERCEPTUAL}", f"loss.gan_weight={W_GAN}",
                 f"optim.lr_g={LR_G}", f"optim.lr_d={LR_D}", f"optim.betas=[{BETAS[0]},{BETAS[1]}]",
                 f"optim.milestones=[{MILESTONES[0]},{MILESTONES[1]}]", f"optim.gamma={GAMMA}"]
    with pytest.warns(UserWarning, match="RANDOMLY INITIALISED"):
        trainer = Trainer(load_config(SMOKE, overrides), DistContext())
    G, D = copy.deepcopy(trainer.generator), copy.deepcopy(trainer.discriminator)
    vgg = copy.deepcopy(trainer.perceptual.features)
    opt_g = torch.optim.Adam(G.parameters(), lr=LR_G, betas=BETAS)
    opt_d = torch.optim.Adam(D.parameters(), lr=LR_D, betas=BETAS)

    seen = {"g": [], "d": []}
    for key, opt in (("g", trainer.optimizer_g), ("d", trainer.optimizer_d)):
        opt.register_step_pre_hook(
            lambda o, args, kwargs, key=key: seen[key].append(
                ([p.grad.clone() for g in o.param_groups for p in g["params"]], o.param_groups[0]["lr"])))

    ref_grads = {"g": [], "d": []}
    for step in range(3):
        hr = torch.tensor(rng.random((2, 3, 16, 16)), dtype=torch.float32)
        lr = torch.tensor(rng.random((2, 3, 4, 4)), dtype=torch.float32)
        ours = trainer.optimise(hr, lr)
        ref, g_grads, d_grads = _reference_step(G, D, vgg, opt_g, opt_d, hr, lr, step)
        ref_grads["g"].append(g_grads)
        ref_grads["d"].append(d_grads)
        for name in ("pixel", "perceptual", "gan", "total", "d"):
            torch.testing.assert_close(ours[name], ref[name], rtol=1e-5, atol=0, msg=f"{name} at step {step}")
        # D's outputs themselves are known up to the last bias's noise steps (see _exact_zero_gradient)
        torch.testing.assert_close(ours["d_real"] - ours["d_fake"], ref["d_real"] - ref["d_fake"], rtol=1e-4, atol=1e-6)
        (our_g, lr_g), (our_d, lr_d) = seen["g"][step], seen["d"][step]
        assert lr_g == pytest.approx(_lr(LR_G, step), rel=1e-12) and lr_d == pytest.approx(_lr(LR_D, step), rel=1e-12)
        _close_all(our_g, g_grads, f"G gradients at step {step}")
        _close_all(our_d, d_grads, f"D gradients at step {step}")
    for key, ours, refs in (("g", trainer.generator, G), ("d", trainer.discriminator, D)):
        for index, (a, b) in enumerate(zip(ours.parameters(), refs.parameters(), strict=True)):
            if not _exact_zero_gradient(ref_grads[key], index):
                torch.testing.assert_close(a.detach(), b.detach(), rtol=1e-4, atol=1e-5)
