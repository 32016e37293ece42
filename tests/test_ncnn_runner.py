"""The ncnn backend (CPU and Vulkan) through the one Upscaler, and `--backend auto`'s choice.

Parity is against torch fp32 on real photo crops (kept tiny: the default model is 16.7 M
parameters, and Mesa's llvmpipe Vulkan runs on the CPU)."""
from __future__ import annotations

import logging
import types

import numpy as np
import pytest
import torch

from realsr_fast import cli
from realsr_fast.errors import RealSRError
from realsr_fast.inference import auto_choice
from realsr_fast.inference.backends import UpscalerSettings
from realsr_fast.inference.upscaler import Upscaler
from realsr_fast.models import zoo

ncnn = pytest.importorskip("ncnn")
skimage_data = pytest.importorskip("skimage.data")

CROPS = {  # 24 x 28 crops with detail (face, fur)
    "astronaut": lambda: skimage_data.astronaut()[120:144, 200:228].copy(),
    "chelsea": lambda: skimage_data.chelsea()[100:124, 170:198].copy(),
}
CPU = torch.device("cpu")


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def has_vulkan() -> bool:
    return ncnn.get_gpu_count() > 0


@pytest.fixture(scope="module", autouse=True)
def _cache(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv(zoo.HOME_ENV, str(tmp_path_factory.mktemp("cache")))
    yield
    mp.undo()


@pytest.fixture(scope="module")
def torch_fp32() -> Upscaler:
    return Upscaler("df2k", device="cpu", precision="fp32", backend="torch")


@pytest.fixture(scope="module")
def ncnn_cpu() -> Upscaler:
    return Upscaler("df2k", device="cpu", backend="ncnn")


@pytest.mark.parametrize("name", CROPS)
def test_ncnn_cpu_matches_torch_fp32(name, ncnn_cpu, torch_fp32) -> None:
    image = CROPS[name]()
    ours, reference = ncnn_cpu(image), torch_fp32(image)
    assert ncnn_cpu.precision == "fp32" and ncnn_cpu.scale == 4
    assert ours.shape == reference.shape == (96, 112, 3)
    assert reference.std() > 20  # a real photo crop, not a flat patch
    assert psnr(ours, reference) >= 50


@pytest.mark.slow
def test_ncnn_runs_through_the_tiler(torch_fp32) -> None:
    """Tiles, their context pad, batches and progress are the Upscaler's, as for every backend."""
    tiled = Upscaler("df2k", device="cpu", backend="ncnn", tile=8, tile_pad=8)
    x = torch.stack([torch.from_numpy(CROPS[name]()[:16, :16]).permute(2, 0, 1).float() / 255
                     for name in CROPS])  # (2, 3, 16, 16): two different photos
    calls: list[tuple[int, int]] = []
    y = tiled.upscale_tensor(x, progress=lambda done, total: calls.append((done, total)))
    assert calls[-1][0] == calls[-1][1] > 1  # several tiles, each reported
    for item in range(2):
        whole = torch_fp32.upscale_tensor(x[item:item + 1])
        assert 10 * torch.log10(1 / torch.mean((y[item:item + 1] - whole) ** 2)) >= 40


@pytest.mark.slow
@pytest.mark.skipif(not has_vulkan(), reason="no Vulkan device (apt install mesa-vulkan-drivers libvulkan1)")
def test_vulkan_matches_torch_fp32(torch_fp32) -> None:
    image = CROPS["astronaut"]()[:16, :16].copy()
    vulkan = Upscaler("df2k", device="vulkan", backend="ncnn")
    assert vulkan.precision == "auto" and vulkan.tile is not None  # planned from the heap budget
    assert psnr(vulkan(image), torch_fp32(image)) >= 45


def test_vulkan_falls_back_to_the_cpu_in_one_line(monkeypatch, caplog) -> None:
    monkeypatch.setattr(ncnn, "get_gpu_count", lambda: 0)
    with caplog.at_level(logging.WARNING):
        up = Upscaler("df2k", device="vulkan", backend="ncnn")
    assert up._runner.vulkan is None and up.precision == "fp32"
    assert [r.message for r in caplog.records if "Vulkan" in r.message] == [
        "no Vulkan device found (install your GPU's Vulkan driver); ncnn runs on the CPU"]


def test_ncnn_refusals(tmp_path, monkeypatch) -> None:
    pth = tmp_path / "net.pth"
    pth.write_bytes(b"x")
    with pytest.raises(RealSRError, match="--backend torch or onnx"):
        Upscaler(pth, device="cpu", backend="ncnn")
    (tmp_path / "net.param").write_text("7767517\n")
    with pytest.raises(RealSRError, match="net.bin is missing"):
        Upscaler(tmp_path / "net.param", device="cpu", backend="ncnn")
    with pytest.raises(RealSRError, match="bf16"):
        Upscaler("df2k", device="cpu", precision="bf16", backend="ncnn")
    with pytest.raises(RealSRError, match="add --backend ncnn"):
        Upscaler("df2k", device="vulkan", backend="torch")
    monkeypatch.setattr(ncnn, "get_gpu_count", lambda: 1)
    monkeypatch.setattr(ncnn, "get_gpu_info", lambda i: types.SimpleNamespace(device_name=lambda: "gpu"))
    with pytest.raises(RealSRError, match=r"1 Vulkan device\(s\): vulkan:0 gpu"):
        Upscaler("df2k", device="vulkan:3", backend="ncnn")


# --- backend auto --------------------------------------------------------------------------

@pytest.fixture
def cpu_features(monkeypatch) -> dict[str, object]:
    """The CPU as auto_choice sees it (no native bf16, AVX2, no Vulkan GPU unless a test changes it)."""
    features: dict[str, object] = {"bf16": False, "isa": "avx2"}
    monkeypatch.setattr(auto_choice, "cpu_has_native_bf16", lambda: features["bf16"])
    monkeypatch.setattr(auto_choice, "cpu_isa", lambda: features["isa"])
    monkeypatch.setattr(ncnn, "get_gpu_count", lambda: 0)
    return features


@pytest.mark.parametrize("native_bf16, isa, model, device, precision, expected", [
    (True, "avx512", "df2k", "cpu", "auto", ("torch", "bf16")),
    (True, "avx512", "df2k", "cpu", "fp32", ("torch", "fp32")),
    (False, "avx2", "df2k", "cpu", "auto", ("torch", "fp32")),
    (False, "avx512", "df2k", "auto", "auto", ("torch", "fp32")),
    (False, "baseline", "df2k", "auto", "auto", ("ncnn", "fp32")),  # no vector Winograd: ncnn
    (False, "baseline", "net.pth", "cpu", "auto", ("torch", "fp32")),  # ...unless it cannot run the model
    (False, "avx2", "net.pth", "cpu", "auto", ("torch", "fp32")),
    (False, "avx2", "df2k", "cpu", "bf16", ("torch", "bf16")),
    (False, "avx2", "df2k", "vulkan", "auto", ("ncnn", "auto")),
])
def test_auto_choice(native_bf16, isa, model, device, precision, expected, cpu_features) -> None:
    cpu_features.update(bf16=native_bf16, isa=isa)
    choice = auto_choice.choose(UpscalerSettings(model, device, precision, backend="auto"), CPU)
    assert (choice.backend, choice.precision) == expected and choice.reason


def test_auto_choice_times_nothing(cpu_features, monkeypatch) -> None:
    """The choice reads what the machine is, never how fast a backend ran: no runner is loaded
    before the chosen one, and nothing is written to the cache folder."""
    loaded: list[str] = []
    monkeypatch.setattr(auto_choice, "load_backend", lambda settings, device: loaded.append(settings.backend))
    auto_choice.load_runner(UpscalerSettings("df2k", "cpu", "auto", backend="auto"), CPU)
    assert loaded == ["torch"]


def test_auto_takes_a_vulkan_gpu_but_not_a_software_one(monkeypatch, cpu_features) -> None:
    kinds = [3, 0]  # llvmpipe (the CPU), then a discrete GPU
    monkeypatch.setattr(ncnn, "get_gpu_count", lambda: len(kinds))
    monkeypatch.setattr(ncnn, "get_gpu_info", lambda i: types.SimpleNamespace(type=lambda: kinds[i]))
    choice = auto_choice.choose(UpscalerSettings("df2k", "auto", "auto", backend="auto"), CPU)
    assert (choice.backend, choice.device) == ("ncnn", "vulkan:1")
    kinds.pop()
    choice = auto_choice.choose(UpscalerSettings("df2k", "auto", "auto", backend="auto"), CPU)
    assert (choice.backend, choice.device) == ("torch", "auto")


def test_auto_keeps_cuda_on_torch() -> None:
    choice = auto_choice.choose(UpscalerSettings("df2k", "cuda", "auto", backend="auto"), torch.device("cuda"))
    assert (choice.backend, choice.precision) == ("torch", "auto")


def test_auto_says_what_it_chose(caplog, cpu_features) -> None:
    with caplog.at_level(logging.WARNING):
        up = Upscaler("df2k", device="cpu", backend="auto")
    assert up.precision == "fp32" and type(up._runner).__name__ == "TorchRunner"
    lines = [r.message for r in caplog.records if r.message.startswith("backend auto")]
    assert len(lines) == 1 and "torch fp32 on cpu (fp32 on the CPU: torch with its Winograd trunk (avx2))" in lines[0]


def test_cli_default_is_auto_and_ncnn_can_be_forced(tmp_path, monkeypatch, caplog, rng, cpu_features) -> None:
    from PIL import Image

    cpu_features["isa"] = "baseline"
    Image.fromarray(rng.integers(0, 256, (8, 10, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    with caplog.at_level(logging.WARNING):
        assert cli.main(["upscale", str(tmp_path / "a.png"), "-o", str(tmp_path / "auto.png")]) == 0
    assert "backend auto: ncnn fp32 on cpu" in caplog.text
    caplog.clear()
    assert cli.main(["upscale", str(tmp_path / "a.png"), "-o", str(tmp_path / "forced.png"),
                     "--backend", "torch", "--precision", "fp32"]) == 0
    assert "backend auto" not in caplog.text
    auto, forced = (np.asarray(Image.open(tmp_path / name)) for name in ("auto.png", "forced.png"))
    assert auto.shape == forced.shape == (32, 40, 3) and psnr(auto, forced) >= 45
