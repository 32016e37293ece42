"""Any output size (#30 point 1): --outscale / --width / --height to the pixel, the resize in linear
light with premultiplied alpha, 16-bit and alpha kept, bad values exit 2 with one line."""
from __future__ import annotations

import sys
import types
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from realsr_fast import cli
from realsr_fast.data.imresize import imresize
from realsr_fast.errors import RealSRError
from realsr_fast.inference.output_size import OutputSize, linear_to_srgb, resize_output, srgb_to_linear
from realsr_fast.inference.upscaler import Upscaler
from realsr_fast.models.formats import save_safetensors
from realsr_fast.models.rrdbnet import RRDBNet

SCALE = 4
TINY = {"in_nc": 3, "out_nc": 3, "nf": 4, "nb": 1, "gc": 4, "scale": 4}


class FakeUpscaler(Upscaler):
    """Nearest-neighbour x4 in place of the network; the real numpy path (and resize) around it."""

    @classmethod
    def from_settings(cls, settings):
        fake = cls.__new__(cls)
        fake.scale, fake.device, fake.precision = SCALE, torch.device("cpu"), "fp32"
        return fake

    def upscale_tensor(self, x: torch.Tensor, progress=None) -> torch.Tensor:
        return x.repeat_interleave(SCALE, dim=2).repeat_interleave(SCALE, dim=3)


@pytest.fixture
def fake(monkeypatch):
    module = types.ModuleType("realsr_fast.inference.upscaler")
    module.Upscaler = FakeUpscaler
    monkeypatch.setitem(sys.modules, "realsr_fast.inference.upscaler", module)
    monkeypatch.setattr(cli, "VERBS", ("upscale",))


def realsr(*args) -> int:
    return cli.main(["upscale", *map(str, args)])


def random_image(rng, height, width, channels=3, dtype=np.uint8) -> np.ndarray:
    return rng.integers(0, np.iinfo(dtype).max, (height, width, channels), endpoint=True).astype(dtype)


def save(path: Path, image: np.ndarray) -> Path:
    if image.dtype == np.uint16 and image.shape[2] > 1:
        order = [2, 1, 0, 3][: image.shape[2]]
        cv2.imwrite(str(path), image[..., order])
    else:
        Image.fromarray(image[..., 0] if image.shape[2] == 1 else image).save(path)
    return path


def load(path: Path) -> np.ndarray:
    array = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if array.ndim == 2:
        return array[..., None]
    return array[..., [2, 1, 0, 3][: array.shape[2]]]


# --- the size rules --------------------------------------------------------------------------

@pytest.mark.parametrize(("asked", "input_hw", "expected"), [
    (OutputSize(), (7, 5), (28, 20)),
    (OutputSize(scale=2), (7, 5), (14, 10)),
    (OutputSize(scale=1.5), (7, 5), (11, 8)),          # 10.5 -> 11, 7.5 -> 8: halves round up
    (OutputSize(scale=1.1), (30, 50), (33, 55)),       # the decimal 1.1, not 1.1000000000000000888
    (OutputSize(scale=0.01), (7, 5), (1, 1)),          # never below one pixel
    (OutputSize(scale=8), (3, 1), (24, 8)),
    (OutputSize(width=100), (30, 41), (73, 100)),      # 73.17
    (OutputSize(width=9), (3, 2), (14, 9)),            # 13.5 -> 14
    (OutputSize(height=9), (2, 3), (9, 14)),
    (OutputSize(width=17, height=5), (7, 5), (5, 17)),  # both: exactly that box
])
def test_output_size_in_pixels(asked, input_hw, expected):
    assert asked.pixels(*input_hw, model_scale=SCALE) == expected


@pytest.mark.parametrize("bad", [dict(scale=0), dict(scale=-1), dict(scale=float("nan")), dict(width=0),
                                 dict(height=-3), dict(scale=2, width=10), dict(scale=2, height=10)])
def test_bad_output_sizes_are_refused(bad):
    with pytest.raises(RealSRError):
        OutputSize(**bad)


# --- the resize -------------------------------------------------------------------------------

def test_srgb_curve_round_trips():
    x = torch.linspace(0, 1, 1001)
    torch.testing.assert_close(linear_to_srgb(srgb_to_linear(x)), x, atol=2e-6, rtol=0)


def test_resize_is_imresize_in_linear_light(rng):
    y = torch.from_numpy(rng.random((1, 3, 20, 28), dtype=np.float32))
    expected = linear_to_srgb(imresize(srgb_to_linear(y), size=(9, 13)))
    torch.testing.assert_close(resize_output(y, (9, 13)), expected, atol=1e-6, rtol=0)


def test_fine_texture_keeps_its_brightness_when_shrunk():
    """A 1-pixel black/white checkerboard halved is a flat grey of half the light: sRGB 188, where
    averaging the code values would give 128 (visibly darker)."""
    board = (np.indices((16, 16)).sum(0) % 2).astype(np.float32)
    y = torch.from_numpy(board)[None, None].expand(1, 3, 16, 16)
    out = resize_output(y, (8, 8))
    centre = out[0, :, 2:-2, 2:-2] * 255
    assert 186 <= float(centre.min()) and float(centre.max()) <= 190


def test_transparent_colour_does_not_bleed_into_the_visible_edge():
    """Left half transparent red, right half opaque blue: shrunk, every visible pixel is blue."""
    y = torch.zeros(1, 4, 16, 16)
    y[0, 0, :, :8] = 1            # red where transparent
    y[0, 2, :, 8:] = 1            # blue where opaque
    y[0, 3, :, 8:] = 1
    out = resize_output(y, (8, 5), alpha=True)
    visible = out[0, 3] > 0.02
    assert visible.any() and (~visible).any()
    assert float(out[0, 0][visible].max()) < 1e-3 and float(out[0, 2][visible].min()) > 0.999


# --- Upscaler.upscale_image(size=) on a tiny real network ----------------------------------------

@pytest.fixture(scope="module")
def tiny_upscaler(tmp_path_factory) -> Upscaler:
    torch.manual_seed(30)
    model = RRDBNet(**TINY)
    path = tmp_path_factory.mktemp("w") / "tiny.safetensors"
    save_safetensors(path, model.state_dict(), TINY)
    return Upscaler(str(path), device="cpu", precision="fp32", backend="torch")


@pytest.mark.parametrize(("channels", "dtype"), [(3, np.uint8), (1, np.uint8), (4, np.uint8),
                                                 (3, np.uint16), (2, np.uint16)])
def test_upscale_image_to_a_size(tiny_upscaler, rng, channels, dtype):
    image = random_image(rng, 7, 5, channels, dtype)
    for size in [(11, 8), (5, 3), (29, 17), (28, 20)]:
        out = tiny_upscaler.upscale_image(image, size=size)
        assert out.shape == (*size, channels) and out.dtype == dtype
    native = tiny_upscaler.upscale_image(image)
    np.testing.assert_array_equal(tiny_upscaler.upscale_image(image, size=(28, 20)), native)


# --- the command line ------------------------------------------------------------------------------

@pytest.mark.parametrize(("options", "expected"), [
    (["-s", "1.5"], (11, 8)),
    (["--outscale", "3"], (21, 15)),
    (["--width", "9"], (13, 9)),     # 12.6 -> 13
    (["--height", "10"], (10, 7)),   # 7.14 -> 7
    (["--width", "33", "--height", "6"], (6, 33)),
])
@pytest.mark.parametrize(("channels", "dtype"), [(3, np.uint8), (4, np.uint8), (3, np.uint16), (1, np.uint16)])
def test_cli_sizes_are_exact(tmp_path, rng, fake, options, expected, channels, dtype):
    image = random_image(rng, 7, 5, channels, dtype)
    source = save(tmp_path / "in.png", image)
    assert realsr(source, "-o", tmp_path / "out.png", *options) == 0
    out = load(tmp_path / "out.png")
    assert out.shape == (*expected, channels) and out.dtype == dtype


def test_cli_size_follows_the_exif_orientation(tmp_path, rng, fake):
    """--width is the width as shown: a photo stored 5 wide and 7 high, turned a quarter by EXIF."""
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(random_image(rng, 7, 5)).save(tmp_path / "in.jpg", exif=exif)
    assert realsr(tmp_path / "in.jpg", "-o", tmp_path / "out.png", "--width", "14") == 0
    assert load(tmp_path / "out.png").shape == (10, 14, 3)


def test_existing_output_is_kept_without_overwrite(tmp_path, rng, fake):
    source = save(tmp_path / "in.png", random_image(rng, 7, 5))
    target = tmp_path / "out.png"
    target.write_bytes(b"mine")
    assert realsr(source, "-o", target, "-s", "2") == 0
    assert target.read_bytes() == b"mine"
    assert realsr(source, "-o", target, "-s", "2", "--overwrite") == 0
    assert load(target).shape == (14, 10, 3)


@pytest.mark.parametrize(("options", "message"), [
    (["--outscale", "0"], "argument -s/--outscale: must be more than 0"),
    (["-s", "-2"], "argument -s/--outscale: must be at least 0, got -2"),
    (["-s", "two"], "argument -s/--outscale: expected a number, got 'two'"),
    (["-s", "2", "--width", "100"], "--outscale and --width/--height both set the output size"),
    (["--height", "50", "--outscale", "2"], "--outscale and --width/--height both set the output size"),
    (["--width", "0"], "argument --width: must be at least 1, got 0"),
    (["--strength", "1.5"], "argument --strength: must be at most 1, got 1.5"),
    (["--strength", "-0.1"], "argument --strength: must be at least 0, got -0.1"),
    (["--quality", "0"], "argument --quality: must be at least 1, got 0"),
    (["--quality", "101"], "argument --quality: must be at most 100, got 101"),
])
def test_bad_values_exit_2_with_one_line(tmp_path, rng, fake, capsys, options, message):
    source = save(tmp_path / "in.png", random_image(rng, 7, 5))
    with pytest.raises(SystemExit) as stop:
        realsr(source, "-o", tmp_path / "out.png", *options)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and message in errors[0] and "Traceback" not in err
    assert not (tmp_path / "out.png").exists()
