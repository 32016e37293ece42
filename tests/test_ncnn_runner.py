"""The ncnn backend (CPU and Vulkan) through the one Upscaler, and `--backend auto`'s choice.

Parity is against torch fp32 on real photo crops (kept tiny: the default model is 16.7 M
parameters, and Mesa's llvmpipe Vulkan runs on the CPU)."""
from __future__ import annotations

import json
import logging
import time
import types

import numpy as np
import pytest
import torch

from realsr_fast import cli
from realsr_fast.errors import RealSRError
from realsr_fast.inference import auto_choice, calibration
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
def timings(monkeypatch, tmp_path) -> list[calibration.Fp32Timing]:
    """Fake calibration timings (ncnn faster unless a test changes it), cached in a fresh home (never
    the user's); records each measurement."""
    monkeypatch.setenv(zoo.HOME_ENV, str(tmp_path / "home"))
    measured: list[calibration.Fp32Timing] = []
    answer = calibration.Fp32Timing(ncnn=1.0, torch=1.5)

    def fake_measure(settings, side):
        measured.append(answer)
        return measured[-1]

    monkeypatch.setattr(calibration, "measure", fake_measure)
    return measured


def test_calibration_is_measured_once_and_cached(timings, tmp_path, monkeypatch) -> None:
    settings = UpscalerSettings("df2k", "cpu", "fp32", backend="auto")
    path = tmp_path / "calibration.json"
    first = calibration.fp32_timing(settings, 128, path)
    assert calibration.fp32_timing(settings, 128, path) == first and len(timings) == 1
    calibration.fp32_timing(settings, 256, path)  # another tile size: measured anew
    assert len(timings) == 2
    monkeypatch.setattr(torch, "get_num_threads", lambda: 7)  # another machine setting: measured anew
    calibration.fp32_timing(settings, 128, path)
    assert len(timings) == 3 and len(json.loads(path.read_text())) == 3
    path.write_text("{not json")
    calibration.fp32_timing(settings, 128, path)
    assert len(timings) == 4


def test_calibration_keeps_each_backends_fastest_interleaved_run(monkeypatch) -> None:
    calls: list[str] = []
    seconds = {"ncnn": iter([3.0, 1.0]), "torch": iter([2.0, 2.5])}  # ncnn's first run was disturbed

    def fake_load(settings, device):
        return settings.backend

    def fake_time(backend, side):
        calls.append(backend)
        return next(seconds[backend])

    monkeypatch.setattr(calibration, "load_runner", fake_load)
    monkeypatch.setattr(calibration, "time_tile", fake_time)
    timing = calibration.measure(UpscalerSettings("df2k", "cpu", "fp32", backend="auto"), 256)
    assert calls == ["ncnn", "torch", "ncnn", "torch"] and timing == calibration.Fp32Timing(ncnn=1.0, torch=2.0)
    assert timing.faster == "ncnn"


def test_calibration_times_a_real_runner() -> None:
    class Sleepy:
        def __call__(self, x):
            time.sleep(x.shape[-1] / 1000)
            return x

    assert 0.12 <= calibration.time_tile(Sleepy(), 128) < 0.5  # the warm-up tile is not counted


@pytest.mark.parametrize("small_winner", ["torch", "ncnn"])
def test_auto_fp32_runs_each_tile_on_the_winner_at_its_size(small_winner, monkeypatch, tmp_path, caplog) -> None:
    """The calibration at 128 px decides small tiles, the one at 256 px large ones (and no other is timed)."""
    large_winner = "ncnn" if small_winner == "torch" else "torch"
    timed: list[int] = []

    def fake_measure(settings, side):
        timed.append(side)
        winner = small_winner if side == 128 else large_winner
        return calibration.Fp32Timing(ncnn=1.0 if winner == "ncnn" else 2.0, torch=1.0 if winner == "torch" else 2.0)

    monkeypatch.setattr(calibration, "measure", fake_measure)
    monkeypatch.setenv(zoo.HOME_ENV, str(tmp_path))
    choice = auto_choice.choose(UpscalerSettings("df2k", "cpu", "fp32", backend="auto"), CPU)
    assert (choice.backend, choice.precision, choice.device) == (auto_choice.PER_TILE_SIZE, "fp32", "cpu")
    runner = auto_choice.load_runner(UpscalerSettings("df2k", "cpu", "fp32", backend="auto"), CPU)
    ran: list[str] = []
    for name in ("ncnn", "torch"):
        runner._runners[name] = lambda x, name=name: ran.append(name) or x
    with caplog.at_level(logging.WARNING):
        for side in (40, 128, 150, 180, 190, 256, 600):
            runner(torch.zeros(1, 3, side, side))
    assert ran == [small_winner] * 4 + [large_winner] * 3 and timed == [128, 256]
    assert f"{large_winner} for tiles near 256 px" in caplog.text

@pytest.mark.parametrize("native_bf16, model, device, precision, expected", [
    (True, "df2k", "cpu", "auto", ("torch", "bf16")),
    (True, "df2k", "cpu", "fp32", (auto_choice.PER_TILE_SIZE, "fp32")),
    (False, "df2k", "cpu", "auto", (auto_choice.PER_TILE_SIZE, "fp32")),
    (False, "df2k", "auto", "auto", (auto_choice.PER_TILE_SIZE, "fp32")),
    (False, "net.pth", "cpu", "auto", ("torch", "fp32")),
    (False, "df2k", "cpu", "bf16", ("torch", "bf16")),
    (False, "df2k", "vulkan", "auto", ("ncnn", "auto")),
])
def test_auto_choice(native_bf16, model, device, precision, expected, monkeypatch, timings) -> None:
    monkeypatch.setattr(auto_choice, "cpu_has_native_bf16", lambda: native_bf16)
    monkeypatch.setattr(ncnn, "get_gpu_count", lambda: 0)  # no Vulkan GPU to prefer
    settings = UpscalerSettings(model, device, precision, backend="auto")
    choice = auto_choice.choose(settings, CPU)
    assert (choice.backend, choice.precision) == expected and choice.reason


def test_auto_takes_a_vulkan_gpu_but_not_a_software_one(monkeypatch, timings) -> None:
    kinds = [3, 0]  # llvmpipe (the CPU), then a discrete GPU
    monkeypatch.setattr(ncnn, "get_gpu_count", lambda: len(kinds))
    monkeypatch.setattr(ncnn, "get_gpu_info", lambda i: types.SimpleNamespace(type=lambda: kinds[i]))
    choice = auto_choice.choose(UpscalerSettings("df2k", "auto", "auto", backend="auto"), CPU)
    assert (choice.backend, choice.device) == ("ncnn", "vulkan:1")
    kinds.pop()
    monkeypatch.setattr(auto_choice, "cpu_has_native_bf16", lambda: False)
    choice = auto_choice.choose(UpscalerSettings("df2k", "auto", "auto", backend="auto"), CPU)
    assert (choice.backend, choice.device) == (auto_choice.PER_TILE_SIZE, "cpu")


def test_auto_keeps_cuda_on_torch() -> None:
    choice = auto_choice.choose(UpscalerSettings("df2k", "cuda", "auto", backend="auto"), torch.device("cuda"))
    assert (choice.backend, choice.precision) == ("torch", "auto")


def test_auto_says_what_it_chose(monkeypatch, caplog, timings) -> None:
    monkeypatch.setattr(auto_choice, "cpu_has_native_bf16", lambda: False)
    with caplog.at_level(logging.WARNING):
        up = Upscaler("df2k", device="cpu", backend="auto")
    assert isinstance(up._runner, auto_choice.PerTileSize) and up.precision == "fp32"
    lines = [r.message for r in caplog.records if r.message.startswith("backend auto")]
    assert len(lines) == 1 and "ncnn|torch by tile size fp32 on cpu" in lines[0] and "whichever was the faster" in lines[0]
    with caplog.at_level(logging.WARNING):
        up(np.zeros((8, 8, 3), np.uint8))
    assert "backend auto: ncnn for tiles near 128 px (ncnn 1.00 s vs torch 1.50 s" in caplog.text


def test_cli_default_is_auto_and_ncnn_can_be_forced(tmp_path, monkeypatch, caplog, rng, timings) -> None:
    from PIL import Image

    monkeypatch.setattr(auto_choice, "cpu_has_native_bf16", lambda: False)
    Image.fromarray(rng.integers(0, 256, (8, 10, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    with caplog.at_level(logging.WARNING):
        assert cli.main(["upscale", str(tmp_path / "a.png"), "-o", str(tmp_path / "auto.png")]) == 0
    assert "backend auto: ncnn|torch by tile size fp32 on cpu" in caplog.text and "ncnn for tiles near" in caplog.text
    caplog.clear()
    assert cli.main(["upscale", str(tmp_path / "a.png"), "-o", str(tmp_path / "forced.png"),
                     "--backend", "torch", "--precision", "fp32"]) == 0
    assert "backend auto" not in caplog.text
    auto, forced = (np.asarray(Image.open(tmp_path / name)) for name in ("auto.png", "forced.png"))
    assert auto.shape == forced.shape == (32, 40, 3) and psnr(auto, forced) >= 45
