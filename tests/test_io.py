"""realsr_fast.io against independent expectations: Pillow and OpenCV decode/encode, numpy maths."""
from __future__ import annotations

import io as pyio
import os

import cv2
import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from realsr_fast.errors import RealSRError
from realsr_fast.io import (
    atomic_write,
    image_to_tensor,
    list_images,
    read_image,
    tensor_to_image,
    write_image,
)

MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}


def random_image(rng: np.random.Generator, height: int, width: int, channels: int,
                 dtype: type = np.uint8) -> np.ndarray:
    shape = (height, width, channels)
    return rng.integers(0, np.iinfo(dtype).max, shape, endpoint=True).astype(dtype)


def pil_image(image: np.ndarray) -> Image.Image:
    return Image.fromarray(image[..., 0] if image.shape[2] == 1 else image)


def pil_pixels(path) -> np.ndarray:
    with Image.open(path) as im:
        pixels = np.asarray(im)
    return pixels[..., None] if pixels.ndim == 2 else pixels


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


# --- 8-bit round trips through Pillow ------------------------------------------------------

@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_lossless_8bit_written_by_us_reads_back_in_pillow(tmp_path, rng, channels, suffix):
    image = random_image(rng, 13, 17, channels)
    path = tmp_path / f"x{suffix}"
    write_image(path, image)
    with Image.open(path) as im:
        assert im.mode == MODES[channels]
    np.testing.assert_array_equal(pil_pixels(path), image)


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("fmt", ["PNG", "TIFF", "WEBP"])
def test_lossless_8bit_written_by_pillow_reads_back_with_us(tmp_path, rng, channels, fmt):
    image = random_image(rng, 11, 9, channels)
    path = tmp_path / f"x.{fmt.lower()}"
    pil_image(image).save(path, format=fmt, lossless=True)
    result = read_image(path)
    assert result.dtype == np.uint8
    np.testing.assert_array_equal(result, pil_pixels(path))
    if fmt != "WEBP":  # WebP has no grey mode: Pillow stores grey as RGB there
        np.testing.assert_array_equal(result, image)


@pytest.mark.parametrize("channels", [1, 3])
def test_bmp_round_trip(tmp_path, rng, channels):
    image = random_image(rng, 10, 7, channels)
    write_image(tmp_path / "x.bmp", image)
    np.testing.assert_array_equal(pil_pixels(tmp_path / "x.bmp"), image)
    np.testing.assert_array_equal(read_image(tmp_path / "x.bmp"), image)


def test_jpeg_reads_like_pillow_and_writes_high_quality(tmp_path, rng):
    # A smooth image: JPEG at quality 95 should keep it well above 40 dB.
    yy, xx = np.mgrid[0:32, 0:48]
    image = np.stack([yy * 7, xx * 5, (yy + xx) * 3], axis=-1).astype(np.uint8)
    write_image(tmp_path / "x.jpg", image)
    with Image.open(tmp_path / "x.jpg") as im:
        assert im.format == "JPEG"
    result = read_image(tmp_path / "x.jpg")
    np.testing.assert_array_equal(result, pil_pixels(tmp_path / "x.jpg"))
    mse = np.mean((result.astype(np.float64) - image) ** 2)
    assert 10 * np.log10(255**2 / max(mse, 1e-12)) > 40


def test_palette_with_transparency_becomes_rgba(tmp_path, rng):
    indices = rng.integers(0, 4, (6, 8)).astype(np.uint8)
    im = Image.fromarray(indices, mode="P")
    im.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255, 9, 9, 9] + [0] * 756)
    im.save(tmp_path / "p.png", transparency=2)
    expected = np.asarray(Image.open(tmp_path / "p.png").convert("RGBA"))
    result = read_image(tmp_path / "p.png")
    assert result.shape == (6, 8, 4)
    np.testing.assert_array_equal(result, expected)
    assert (result[..., 3] == np.where(indices == 2, 0, 255)).all()


# --- 16-bit ---------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16bit_grey_both_ways_with_pillow(tmp_path, rng, suffix):
    image = random_image(rng, 9, 14, 1, np.uint16)
    Image.fromarray(image[..., 0]).save(tmp_path / f"pil{suffix}")  # mode I;16
    result = read_image(tmp_path / f"pil{suffix}")
    assert result.dtype == np.uint16
    np.testing.assert_array_equal(result, image)
    write_image(tmp_path / f"ours{suffix}", image)
    with Image.open(tmp_path / f"ours{suffix}") as im:
        assert im.mode.startswith("I;16")
        np.testing.assert_array_equal(np.asarray(im), image[..., 0])


@pytest.mark.parametrize("channels", [3, 4])
@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16bit_colour_both_ways_with_opencv(tmp_path, rng, channels, suffix):
    image = random_image(rng, 12, 10, channels, np.uint16)
    bgr = image[..., [2, 1, 0, 3][:channels]]
    assert cv2.imwrite(str(tmp_path / f"cv{suffix}"), bgr)
    result = read_image(tmp_path / f"cv{suffix}")
    assert result.dtype == np.uint16
    np.testing.assert_array_equal(result, image)
    write_image(tmp_path / f"ours{suffix}", image)
    ours = cv2.imread(str(tmp_path / f"ours{suffix}"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(ours, bgr)


def test_16bit_grey_alpha_is_written_as_rgba_losslessly(tmp_path, rng):
    image = random_image(rng, 5, 6, 2, np.uint16)
    write_image(tmp_path / "la.png", image)
    result = read_image(tmp_path / "la.png")
    np.testing.assert_array_equal(result, image[..., [0, 0, 0, 1]])


def test_16bit_to_8bit_only_formats_is_refused(tmp_path, rng):
    with pytest.raises(RealSRError, match="8 bits"):
        write_image(tmp_path / "x.jpg", random_image(rng, 4, 4, 3, np.uint16))
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("suffix", [".jpg", ".bmp"])
def test_alpha_to_format_without_alpha_is_refused(tmp_path, rng, suffix):
    with pytest.raises(RealSRError, match="alpha"):
        write_image(tmp_path / f"x{suffix}", random_image(rng, 4, 4, 4))
    assert not list(tmp_path.iterdir())


def test_unknown_suffix_is_refused(tmp_path, rng):
    with pytest.raises(RealSRError, match="suffix"):
        write_image(tmp_path / "x.gif", random_image(rng, 4, 4, 3))


# --- EXIF orientation ----------------------------------------------------------------------

@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_exif_orientation_matches_pillow_exif_transpose(tmp_path, rng, orientation, suffix):
    image = random_image(rng, 6, 10, 3)  # not square, so a wrong rotation changes the shape
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"o{suffix}"
    Image.fromarray(image).save(path, exif=exif)
    with Image.open(path) as im:
        expected = np.asarray(ImageOps.exif_transpose(im))
    result = read_image(path)
    assert result.shape[:2] == ((10, 6) if orientation >= 5 else (6, 10))
    np.testing.assert_array_equal(result, expected)


def test_exif_orientation_applies_to_16bit_colour(tmp_path, rng):
    image = random_image(rng, 4, 7, 3, np.uint16)
    write_image(tmp_path / "plain.png", image)
    # Pillow cannot encode 16-bit RGB, so splice an eXIf chunk (orientation 6) into our PNG.
    exif = Image.Exif()
    exif[0x0112] = 6
    payload = exif.tobytes()
    chunk = _png_chunk(b"eXIf", payload)
    data = (tmp_path / "plain.png").read_bytes()
    (tmp_path / "rotated.png").write_bytes(data[:33] + chunk + data[33:])  # right after IHDR
    result = read_image(tmp_path / "rotated.png")
    assert result.dtype == np.uint16
    np.testing.assert_array_equal(result, np.rot90(image, k=-1))  # 6: turn 90 degrees clockwise


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    import zlib
    checksum = zlib.crc32(kind + payload).to_bytes(4, "big")
    return len(payload).to_bytes(4, "big") + kind + payload + checksum


# --- bad files -----------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_truncated_file_names_the_file(tmp_path, rng, suffix):
    path = tmp_path / f"whole{suffix}"
    Image.fromarray(random_image(rng, 64, 64, 3)).save(path)
    data = path.read_bytes()
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(RealSRError, match=f"cut\\{suffix}.*truncated"):
        read_image(cut)


def test_truncated_16bit_colour_png_names_the_file(tmp_path, rng):
    write_image(tmp_path / "whole.png", random_image(rng, 32, 32, 3, np.uint16))
    data = (tmp_path / "whole.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(RealSRError, match="cut.png"):
        read_image(tmp_path / "cut.png")


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("notes.png", b"this is text, not pixels\n" * 10, "not an image"),
        ("empty.jpg", b"", "empty"),
    ],
)
def test_non_image_and_empty_files_name_the_file(tmp_path, name, content, message):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(RealSRError, match=f"{name}.*{message}"):
        read_image(tmp_path / name)


def test_missing_file_and_folder_name_the_path(tmp_path):
    with pytest.raises(RealSRError, match="nothere.png"):
        read_image(tmp_path / "nothere.png")
    with pytest.raises(RealSRError, match="folder"):
        read_image(tmp_path)


# --- atomic writes -------------------------------------------------------------------------

def test_atomic_write_replaces_only_on_success(tmp_path):
    target = tmp_path / "report.json"
    target.write_text("old")
    with pytest.raises(ValueError):
        with atomic_write(target, "w") as file:
            file.write("half of the new")
            raise ValueError("crash in the middle")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["report.json"]
    with atomic_write(target, "w") as file:
        file.write("new ✓")
    assert target.read_text(encoding="utf-8") == "new ✓"
    assert os.listdir(tmp_path) == ["report.json"]


def test_atomic_write_survives_ctrl_c_and_keeps_umask_permissions(tmp_path):
    target = tmp_path / "x.bin"
    with pytest.raises(KeyboardInterrupt):
        with atomic_write(target) as file:
            file.write(b"\0" * 100)
            raise KeyboardInterrupt
    assert not list(tmp_path.iterdir())
    with atomic_write(target) as file:
        file.write(b"data")
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


def test_write_image_failing_encoder_leaves_target_and_no_temp_file(tmp_path, rng, monkeypatch):
    target = tmp_path / "out.png"
    target.write_bytes(b"previous output")

    def failing_save(self, fp, *args, **kwargs):
        fp.write(b"\x89PNG partial")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", failing_save)
    with pytest.raises(RealSRError, match="out.png.*disk full"):
        write_image(target, random_image(rng, 8, 8, 3))
    assert target.read_bytes() == b"previous output"
    assert os.listdir(tmp_path) == ["out.png"]


def test_write_image_creates_parent_folders(tmp_path, rng):
    image = random_image(rng, 3, 5, 3)
    write_image(tmp_path / "a" / "b" / "x.png", image)
    np.testing.assert_array_equal(pil_pixels(tmp_path / "a" / "b" / "x.png"), image)


# --- tensors -------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_image_tensor_round_trip_is_exact(rng, dtype, channels):
    image = random_image(rng, 7, 5, channels, dtype)
    x = image_to_tensor(image)
    assert x.shape == (1, channels, 7, 5) and x.dtype == torch.float32
    expected = image.transpose(2, 0, 1)[None].astype(np.float64) / np.iinfo(dtype).max
    np.testing.assert_allclose(x.numpy(), expected, rtol=0, atol=1e-7)
    result = tensor_to_image(x, dtype)
    assert result.dtype == dtype
    np.testing.assert_array_equal(result, image)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_tensor_to_image_clamps_and_rounds(rng, dtype):
    x = torch.from_numpy(rng.uniform(-0.2, 1.2, (1, 3, 6, 4)).astype(np.float32))
    peak = np.iinfo(dtype).max
    clipped = np.clip(x.numpy()[0].transpose(1, 2, 0), 0, 1)
    expected = np.rint(clipped * np.float32(peak)).astype(dtype)  # rint: ties to even
    before = x.clone()
    np.testing.assert_array_equal(tensor_to_image(x, dtype), expected)
    np.testing.assert_array_equal(tensor_to_image(x[0], dtype), expected)
    assert torch.equal(x, before)  # the caller's tensor is not clamped in place


# --- listing -------------------------------------------------------------------------------

def test_list_images_expands_folders_sorted_and_filtered(tmp_path):
    names = ["b.PNG", "a.jpg", "c.JPEG", "d.webp", "e.tif", "f.TIFF", "g.bmp", "notes.txt",
             ".hidden.png", "sub/h.png", "sub/deeper/i.jpg", ".git/j.png"]
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    flat = list_images([tmp_path])
    expected = ["a.jpg", "b.PNG", "c.JPEG", "d.webp", "e.tif", "f.TIFF", "g.bmp"]
    assert [p.name for p in flat] == expected
    deep = list_images([tmp_path], recursive=True)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in deep) == sorted(
        [p.name for p in flat] + ["sub/h.png", "sub/deeper/i.jpg"]
    )
    assert deep == sorted(deep)


def test_list_images_keeps_named_files_and_rejects_missing(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "a.png").write_bytes(b"x")
    assert list_images([tmp_path / "notes.txt", tmp_path / "a.png", tmp_path]) == [
        tmp_path / "a.png", tmp_path / "notes.txt"
    ]
    with pytest.raises(RealSRError, match="missing.png"):
        list_images([tmp_path / "missing.png"])


def test_read_from_bytes_equivalent_decode(tmp_path, rng):
    """read_image's decode equals Pillow decoding the same bytes from memory."""
    image = random_image(rng, 20, 30, 3)
    buffer = pyio.BytesIO()
    Image.fromarray(image).save(buffer, format="WEBP", quality=80)
    (tmp_path / "x.webp").write_bytes(buffer.getvalue())
    buffer.seek(0)
    np.testing.assert_array_equal(read_image(tmp_path / "x.webp"), np.asarray(Image.open(buffer)))


def test_atomic_write_onto_a_folder_is_a_clear_error(tmp_path):
    (tmp_path / "taken").mkdir()
    with pytest.raises(RealSRError, match="cannot write"):
        with atomic_write(tmp_path / "taken", "w") as f:
            f.write("x")
    assert [p.name for p in tmp_path.iterdir()] == ["taken"]


def _muldiv255(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    t = a.astype(np.int64) * b + 128
    return ((t >> 8) + t) >> 8


def test_cmyk_becomes_rgb_by_the_subtractive_formula(tmp_path, rng):
    cmyk = rng.integers(0, 256, (9, 11, 4), dtype=np.uint8)
    Image.frombytes("CMYK", (11, 9), cmyk.tobytes()).save(tmp_path / "press.tif")
    c, k = cmyk[..., :3].astype(np.int64), 255 - cmyk[..., 3:].astype(np.int64)
    expected = k - _muldiv255(c, k)  # (255 - C)(255 - K) / 255, rounded as Pillow's integer CMYK -> RGB
    got = read_image(tmp_path / "press.tif")
    assert got.dtype == np.uint8 and got.shape == (9, 11, 3)
    np.testing.assert_allclose(got.astype(np.int64), expected, atol=1)


def test_32bit_integer_grey_reads_as_16bit_when_it_fits(tmp_path, rng):
    values = rng.integers(0, 65536, (7, 5)).astype(np.int32)
    Image.fromarray(values).save(tmp_path / "deep.tif")
    with Image.open(tmp_path / "deep.tif") as im:
        assert im.mode == "I"  # the case under test: 32-bit integer grey on disk
    got = read_image(tmp_path / "deep.tif")
    assert got.dtype == np.uint16 and got.shape == (7, 5, 1)
    np.testing.assert_array_equal(got[..., 0], values)
    for bad in (65536, -1):
        values[3, 2] = bad
        Image.fromarray(values).save(tmp_path / "deep.tif")
        with pytest.raises(RealSRError, match="deep.tif.*outside 0..65535"):
            read_image(tmp_path / "deep.tif")


def test_32bit_float_grey_is_refused_with_the_format_named(tmp_path, rng):
    Image.fromarray(rng.random((6, 4)).astype(np.float32)).save(tmp_path / "float.tif")
    with pytest.raises(RealSRError, match="float.tif: pixel format 'F' is not supported"):
        read_image(tmp_path / "float.tif")
