"""Where training starts: ESRGAN's initialisation from scratch, ESRGAN's PSNR x4 weights by name."""
from __future__ import annotations

import math

import pytest
import torch

from realsr_fast import download
from realsr_fast.download import ESRGAN_PSNR_X4, hub_checkpoint_path
from realsr_fast.errors import RealSRError
from realsr_fast.models.loading import load_model
from realsr_fast.models.rrdbnet import RRDBNet


def test_dense_block_convs_start_as_esrgans():
    """Kaiming normal (fan in, gain sqrt(2)) x 0.1 and zero bias on the dense-block convolutions
    (xinntao/ESRGAN RRDBNet_arch `initialize_weights(..., 0.1)`); PyTorch's default elsewhere."""
    torch.manual_seed(0)
    net = RRDBNet(nf=32, nb=2, gc=16)
    for name, conv in net.named_modules():
        if not name.split(".")[-1].startswith("conv") or "RDB" not in name:
            continue
        fan_in = conv.weight[0].numel()
        std = conv.weight.std().item()
        assert std == pytest.approx(0.1 * math.sqrt(2 / fan_in), rel=0.1), name
        assert torch.count_nonzero(conv.bias) == 0, name
    fan_in = net.conv_first.weight[0].numel()  # PyTorch's default: uniform, std 1 / sqrt(3 fan_in)
    assert net.conv_first.weight.std().item() == pytest.approx(1 / math.sqrt(3 * fan_in), rel=0.15)


def _fake_esrgan_psnr(path) -> RRDBNet:
    """A small RRDBNet saved in BasicSR's layout (`params`, `body.N.rdbM.convK`), as the real file is."""
    net = RRDBNet(nf=8, nb=1, gc=4)
    rename = {"RRDB_trunk.": "body.", "trunk_conv": "conv_body", "upconv": "conv_up", "HRconv": "conv_hr"}
    state = {}
    for key, value in net.state_dict().items():
        for old, new in rename.items():
            key = key.replace(old, new)
        state[key.replace(".RDB", ".rdb")] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"params": state}, path)
    return net


def test_esrgan_psnr_loads_by_name_from_the_hub_cache(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    net = _fake_esrgan_psnr(hub_checkpoint_path(ESRGAN_PSNR_X4))
    loaded = load_model("esrgan-psnr")
    assert loaded.config() == net.config()
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in net.state_dict().items())


def test_esrgan_psnr_offline_and_missing_names_the_file(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setenv(download.OFFLINE_ENV, "1")
    with pytest.raises(RealSRError, match="ESRGAN_PSNR_SRx4_DF2K_official-150ff491.pth"):
        load_model("esrgan-psnr")
    assert ESRGAN_PSNR_X4.expected_hash == "150ff491"
