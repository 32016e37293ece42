"""The default model reproduces the reference implementation: the `ncnn` package running the
same REALSR_DF2K_UP4X .param/.bin on the CPU (docs/METHOD.md §9), on real photo crops."""
from __future__ import annotations

import numpy as np
import pytest

from realsr_fast.inference.upscaler import Upscaler
from realsr_fast.models import zoo

ncnn = pytest.importorskip("ncnn")
skimage_data = pytest.importorskip("skimage.data")

CROPS = {  # 48 x 56 crops with detail (faces, fur, texture)
    "astronaut": lambda: skimage_data.astronaut()[110:158, 190:246],
    "coffee": lambda: skimage_data.coffee()[170:218, 220:276],
    "chelsea": lambda: skimage_data.chelsea()[90:138, 160:216],
}


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


@pytest.fixture(scope="module")
def ncnn_net():
    param, weights = zoo.package_files(zoo.MODELS["df2k"])
    net = ncnn.Net()
    net.opt.num_threads = 2
    # fp32 storage and arithmetic: the reference, not ncnn's own fp16 approximation of it.
    net.opt.use_fp16_storage = False
    net.opt.use_fp16_packed = False
    net.opt.use_fp16_arithmetic = False
    net.opt.use_bf16_storage = False
    assert net.load_param(str(param)) == 0 and net.load_model(str(weights)) == 0
    return net


def ncnn_upscale(net, image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> (4H, 4W, 3) uint8 through ncnn (input CHW float in [0, 1])."""
    chw = np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32) / 255
    extractor = net.create_extractor()
    extractor.input("data", ncnn.Mat(chw))  # chw stays referenced while the Mat wraps it
    status, out = extractor.extract("output")
    assert status == 0
    y = np.array(out)
    return np.clip(np.round(y * 255), 0, 255).astype(np.uint8).transpose(1, 2, 0)


@pytest.fixture(scope="module")
def upscaler(tmp_path_factory) -> Upscaler:
    mp = pytest.MonkeyPatch()
    mp.setenv(zoo.HOME_ENV, str(tmp_path_factory.mktemp("cache")))
    yield Upscaler("df2k", device="cpu", precision="fp32")
    mp.undo()


@pytest.mark.parametrize("name", CROPS)
def test_df2k_matches_ncnn(name: str, ncnn_net, upscaler: Upscaler) -> None:
    image = CROPS[name]()
    reference = ncnn_upscale(ncnn_net, image)
    ours = upscaler(image)
    assert ours.shape == reference.shape == (192, 224, 3)
    assert reference.std() > 20  # a real photo crop, not a flat patch
    assert psnr(ours, reference) >= 50


def test_bf16_stays_close_to_fp32(upscaler: Upscaler, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(zoo.HOME_ENV, str(tmp_path))
    image = CROPS["astronaut"]()
    bf16 = Upscaler("df2k", device="cpu", precision="bf16")(image)
    value = psnr(bf16, upscaler(image))
    assert 40 <= value < 80  # bf16 really ran, and stayed close (docs/winograd.md has the measured figures)
