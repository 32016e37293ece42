"""KernelGAN networks: collapsed G == literal G (outputs and weight gradients), D == torch's own modules."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from realsr_fast.kernel_estimation.kernelgan.networks import (
    BatchedDiscriminator,
    BatchedGenerator,
    discriminator_init,
    generator_init,
)


def _generator(n: int, seed: int = 0) -> BatchedGenerator:
    gens = [torch.Generator().manual_seed(seed + i) for i in range(n)]
    g = BatchedGenerator([generator_init(gen) for gen in gens]).double()
    with torch.no_grad():  # larger than the init (gain 0.1) so every layer matters in the comparison
        for w in g.weights:
            w.mul_(30.0)
    return g


def test_adjoint_kernel_equals_official_forward_delta():
    g = _generator(3)
    k_fast, k_official = g.kernel(), g.kernel_by_delta()
    assert k_fast.shape == (3, 13, 13)
    assert k_official.abs().max() > 1e-3
    torch.testing.assert_close(k_fast, k_official, rtol=1e-10, atol=1e-12)


def test_kernel_is_the_impulse_response_of_the_literal_generator():
    g = _generator(2, seed=5)
    x = torch.zeros(2, 3, 64, 64, dtype=torch.float64)
    x[:, :, 20, 30] = 1.0  # G(x)[i, j] = k[20 - 2i, 30 - 2j]
    out, _ = g(x, "literal")
    k = g.kernel()
    for i, j in [(4, 9), (5, 10), (7, 12)]:
        torch.testing.assert_close(out[:, 1, i, j], k[:, 20 - 2 * i, 30 - 2 * j], rtol=1e-9, atol=1e-14)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 2e-4)])
def test_collapsed_and_literal_forms_agree_on_outputs_and_weight_gradients(dtype, tol):
    g = _generator(3, seed=11).to(dtype)
    x = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(1), dtype=torch.float64).to(dtype) * 2 - 1
    probe = torch.randn(3, 3, 26, 26, generator=torch.Generator().manual_seed(2), dtype=torch.float64).to(dtype)
    grads, outs = {}, {}
    for form in ("collapsed", "literal"):
        g.zero_grad()
        out, k = g(x, form)
        ((out * probe).sum() + (k**2).sum()).backward()
        outs[form] = out.detach()
        grads[form] = [w.grad.clone() for w in g.weights]
    assert outs["collapsed"].shape == (3, 3, 26, 26)
    scale = outs["literal"].abs().max()
    torch.testing.assert_close(outs["collapsed"], outs["literal"], rtol=tol, atol=tol * scale)
    for fast, literal in zip(grads["collapsed"], grads["literal"]):
        torch.testing.assert_close(fast, literal, rtol=tol, atol=tol * literal.abs().max())


def _torch_discriminator(params: dict[str, torch.Tensor]) -> nn.Module:
    """The official architecture from torch's own modules, loaded with one image's parameters."""
    layers = [nn.utils.spectral_norm(nn.Conv2d(3, 64, 7))]
    for _ in range(5):
        layers += [nn.utils.spectral_norm(nn.Conv2d(64, 64, 1)), nn.BatchNorm2d(64), nn.ReLU()]
    layers += [nn.utils.spectral_norm(nn.Conv2d(64, 1, 1)), nn.Sigmoid()]
    d = nn.Sequential(*layers).double()
    convs = [m for m in d if isinstance(m, nn.Conv2d)]
    bns = [m for m in d if isinstance(m, nn.BatchNorm2d)]
    weights = [params["w_first"]] + list(params["w_hidden"]) + [params["w_last"]]
    us = [params["u_first"]] + list(params["u_hidden"]) + [params["u_last"]]
    bias_gen = torch.Generator().manual_seed(11)
    with torch.no_grad():
        for conv, w, u in zip(convs, weights, us):
            conv.weight_orig.copy_(w.reshape(conv.weight_orig.shape))
            conv.weight_u.copy_(u)
            # Random biases before BatchNorm: ours has none, so matching shows that they cancel.
            conv.bias.normal_(0.0, 0.5, generator=bias_gen)
        convs[-1].bias.copy_(params["b_last"])
        for bn, gamma, beta in zip(bns, params["bn_weight"], params["bn_bias"]):
            bn.weight.copy_(gamma)
            bn.bias.copy_(beta)
    return d


def test_batched_discriminator_matches_torch_spectral_norm_and_batchnorm_per_image():
    n = 3
    per_image = [discriminator_init(torch.Generator().manual_seed(40 + i)) for i in range(n)]
    for p in per_image:
        p["bn_bias"] = p["bn_bias"] + 0.1
    per_image = [{k: v.double() for k, v in p.items()} for p in per_image]
    references = [_torch_discriminator(p) for p in per_image]
    batched = BatchedDiscriminator(per_image).double()  # its init takes one power-iteration step
    x = torch.randn(n, 2, 3, 26, 26, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    for ref, image in zip(references, x):
        ref(image[:1])  # the same init step
    for step in range(3):  # successive forwards: spectral norm's u must evolve the same way
        scores = batched(x, batched.normalised_weights(passes=2))
        assert scores.shape == (n, 2, 400)
        for i, ref in enumerate(references):
            for slot in range(2):
                expected = ref(x[i, slot : slot + 1]).reshape(-1)
                torch.testing.assert_close(scores[i, slot], expected, rtol=1e-9, atol=1e-12)


def test_discriminator_gradients_match_torch():
    per_image = [{k: v.double() for k, v in discriminator_init(torch.Generator().manual_seed(7)).items()}]
    per_image[0]["bn_bias"] = per_image[0]["bn_bias"] + 0.1
    ref = _torch_discriminator(per_image[0])
    batched = BatchedDiscriminator(per_image).double()
    x = torch.randn(1, 1, 3, 26, 26, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    ref(x[0])  # init step
    batched(x, batched.normalised_weights(passes=1)).sum().backward()
    ref(x[0]).sum().backward()
    torch.testing.assert_close(batched.w_first.grad[0], ref[0].weight_orig.grad.reshape(64, -1), rtol=1e-8, atol=1e-12)
    torch.testing.assert_close(batched.bn_weight.grad[0, 2], ref[8].weight.grad, rtol=1e-8, atol=1e-12)
