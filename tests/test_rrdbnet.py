"""RRDBNet against a literal numpy forward pass written from the ESRGAN / RealSR spec."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from realsr_fast.errors import RealSRError
from realsr_fast.models.rrdbnet import RRDBNet


def conv3x3(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """(Cin, H, W) -> (Cout, H, W): zero-padded 3x3 cross-correlation, float64."""
    _, h, w = x.shape
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1)))
    out = np.zeros((weight.shape[0], h, w))
    for dy in range(3):
        for dx in range(3):
            out += np.einsum("oi,ihw->ohw", weight[:, :, dy, dx], padded[:, dy:dy + h, dx:dx + w])
    return out + bias[:, None, None]


def lrelu(x: np.ndarray) -> np.ndarray:
    return np.where(x >= 0, x, 0.2 * x)


def reference_forward(params: dict[str, np.ndarray], x: np.ndarray, nb: int,
                      num_upsamples: int) -> np.ndarray:
    """ESRGAN's RRDBNet (xinntao/ESRGAN RRDBNet_arch.py) written out literally, one image."""
    def conv(name: str, inp: np.ndarray) -> np.ndarray:
        return conv3x3(inp, params[f"{name}.weight"], params[f"{name}.bias"])

    fea = conv("conv_first", x)
    trunk = fea
    for b in range(nb):
        block_in = trunk
        out = block_in
        for r in (1, 2, 3):
            prefix = f"RRDB_trunk.{b}.RDB{r}"
            x0 = out
            x1 = lrelu(conv(f"{prefix}.conv1", x0))
            x2 = lrelu(conv(f"{prefix}.conv2", np.concatenate([x0, x1])))
            x3 = lrelu(conv(f"{prefix}.conv3", np.concatenate([x0, x1, x2])))
            x4 = lrelu(conv(f"{prefix}.conv4", np.concatenate([x0, x1, x2, x3])))
            x5 = conv(f"{prefix}.conv5", np.concatenate([x0, x1, x2, x3, x4]))
            out = x5 * 0.2 + x0
        trunk = out * 0.2 + block_in
    fea = fea + conv("trunk_conv", trunk)
    for i in range(1, num_upsamples + 1):
        fea = lrelu(conv(f"upconv{i}", fea.repeat(2, axis=1).repeat(2, axis=2)))
    return conv("conv_last", lrelu(conv("HRconv", fea)))


def test_default_config_is_realsr() -> None:
    model = RRDBNet().to("meta")
    assert sum(p.numel() for p in model.parameters()) == 16_697_987  # docs/METHOD.md §7
    assert model.config() == {"in_nc": 3, "out_nc": 3, "nf": 64, "nb": 23, "gc": 32, "scale": 4}


@pytest.mark.parametrize("scale", [1, 2, 4])
def test_forward_matches_literal_numpy_reference(scale: int) -> None:
    torch.manual_seed(0)
    model = RRDBNet(nf=8, nb=2, gc=4, scale=scale).eval()
    for p in model.parameters():  # larger weights than the default init, so every path matters
        torch.nn.init.normal_(p, std=0.2)
    x = torch.rand(1, 3, 7, 9, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = model(x)[0].double().numpy()
    params = {k: v.double().numpy() for k, v in model.state_dict().items()}
    expected = reference_forward(params, x[0].double().numpy(), nb=2,
                                 num_upsamples=scale.bit_length() - 1)
    assert ours.shape == (3, 7 * scale, 9 * scale)
    assert np.abs(expected).max() > 0.1
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_channels_last_and_batch_agree_with_one_image_at_a_time() -> None:
    torch.manual_seed(0)
    model = RRDBNet(nf=8, nb=1, gc=4).eval()
    x = torch.rand(2, 3, 6, 5, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        batched = model.to(memory_format=torch.channels_last)(
            x.contiguous(memory_format=torch.channels_last))
        single = torch.cat([model(x[i:i + 1]) for i in range(2)])
    torch.testing.assert_close(batched, single, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("scale", [0, 3, 6])
def test_scale_must_be_a_power_of_two(scale: int) -> None:
    with pytest.raises(RealSRError, match="power of two"):
        RRDBNet(nf=8, nb=1, gc=4, scale=scale)
