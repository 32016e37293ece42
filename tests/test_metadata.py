"""Metadata and colour through `realsr upscale` (#30 point 2): EXIF (orientation 1, other tags kept,
resolution scaled), the ICC profile byte for byte, XMP and DPI on PNG, JPEG, WebP and TIFF;
--strip-metadata; --quality; 16-bit PNG; HEIC input with and without pillow-heif."""
from __future__ import annotations

import io
import sys
import types
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image, ImageCms
from PIL.PngImagePlugin import PngInfo

from realsr_fast import cli
from realsr_fast.errors import RealSRError
from realsr_fast.inference.upscaler import Upscaler
from realsr_fast.io import read_image, read_metadata

SCALE = 4
ORIENTATION, MAKE, X_RES, Y_RES, RES_UNIT, EXIF_IFD, DATE_TAKEN, PIXEL_X = 274, 271, 282, 283, 296, 0x8769, 36867, 0xA002
XMP = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF><rdf:Description about="realsr test"/></rdf:RDF></x:xmpmeta>'
FORMATS = {".png": "PNG", ".jpg": "JPEG", ".webp": "WEBP", ".tif": "TIFF"}


class FakeUpscaler(Upscaler):
    @classmethod
    def from_settings(cls, settings):
        fake = cls.__new__(cls)
        fake.scale, fake.device, fake.precision = SCALE, torch.device("cpu"), "fp32"
        return fake

    def upscale_tensor(self, x: torch.Tensor, progress=None) -> torch.Tensor:
        return x.repeat_interleave(SCALE, dim=2).repeat_interleave(SCALE, dim=3)


@pytest.fixture(autouse=True)
def fake(monkeypatch):
    module = types.ModuleType("realsr_fast.inference.upscaler")
    module.Upscaler = FakeUpscaler
    monkeypatch.setitem(sys.modules, "realsr_fast.inference.upscaler", module)
    monkeypatch.setattr(cli, "VERBS", ("upscale",))


def realsr(*args) -> int:
    return cli.main(["upscale", *map(str, args)])


def wide_gamut_profile() -> bytes:
    """An RGB ICC profile that is not the sRGB one Pillow would make (its creator field changed),
    standing in for a Display-P3 or Adobe RGB photo's profile: it must come back byte for byte."""
    icc = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    icc[80:84] = b"P3te"  # profile creator signature: not checked by readers
    return bytes(icc)


def camera_exif(orientation: int = 6, sub_ifd: bool = True) -> Image.Exif:
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    exif[MAKE] = "RealSR Camera"
    exif[X_RES], exif[Y_RES], exif[RES_UNIT] = 72.0, 96.0, 2
    if sub_ifd:
        sub = exif.get_ifd(EXIF_IFD)
        sub[DATE_TAKEN] = "2024:05:06 07:08:09"
        sub[PIXEL_X] = 5
    return exif


def save_photo(path: Path, image: np.ndarray, icc: bytes, orientation: int = 6) -> Path:
    """Save with EXIF, ICC, XMP and DPI (72 x 96, stored orientation) the way the format holds them."""
    fmt = FORMATS[path.suffix]
    options: dict = {"icc_profile": icc, "exif": camera_exif(orientation)}
    if fmt != "WEBP":
        options["dpi"] = (72, 96)
    if fmt == "PNG":
        info = PngInfo()
        info.add_itxt("XML:com.adobe.xmp", XMP.decode())
        options["pnginfo"] = info
    elif fmt == "TIFF":
        exif = camera_exif(orientation, sub_ifd=False)  # libtiff writes no sub-IFDs
        exif[700] = XMP
        options["exif"] = exif
    else:
        options["xmp"] = XMP
    Image.fromarray(image).save(path, format=fmt, **options)
    return path


def xmp_of(im: Image.Image) -> bytes | None:
    value = im.info.get("xmp") or im.info.get("XML:com.adobe.xmp")
    if value is None and im.format == "TIFF":
        value = im.tag_v2.get(700)
    return value.encode() if isinstance(value, str) else value


@pytest.mark.parametrize("out_suffix", list(FORMATS))
@pytest.mark.parametrize("in_suffix", list(FORMATS))
def test_metadata_is_kept_and_scaled(tmp_path, in_suffix, out_suffix):
    rng = np.random.default_rng([ord(c) for c in in_suffix + out_suffix])
    icc = wide_gamut_profile()
    source = save_photo(tmp_path / f"in{in_suffix}", rng.integers(0, 256, (7, 5, 3), dtype=np.uint8), icc)
    target = tmp_path / f"out{out_suffix}"
    assert realsr(source, "-o", target) == 0
    with Image.open(target) as im:
        assert im.size == (7 * SCALE, 5 * SCALE)  # turned by EXIF orientation 6: 7 wide, 5 high
        exif = im.getexif()
        assert im.info.get("icc_profile") == icc
        assert xmp_of(im) == XMP
        assert exif.get(ORIENTATION) == 1
        assert exif.get(MAKE) == "RealSR Camera"
        # stored 72 x 96 dpi, a quarter turn: 96 x 72 as shown, times 4
        assert float(exif[X_RES]) == pytest.approx(384, rel=1e-3)
        assert float(exif[Y_RES]) == pytest.approx(288, rel=1e-3)
        if out_suffix != ".webp":  # WebP has no DPI field of its own
            assert im.info["dpi"] == pytest.approx((384, 288), rel=1e-3)
        if out_suffix != ".tif" and in_suffix != ".tif":  # TIFF: no EXIF sub-IFD (libtiff)
            sub = exif.get_ifd(EXIF_IFD)
            assert sub.get(DATE_TAKEN) == "2024:05:06 07:08:09"
            assert sub.get(PIXEL_X) == 7 * SCALE


@pytest.mark.parametrize("suffix", list(FORMATS))
def test_strip_metadata(tmp_path, suffix):
    rng = np.random.default_rng(len(suffix))
    source = save_photo(tmp_path / f"in{suffix}", rng.integers(0, 256, (7, 5, 3), dtype=np.uint8),
                        wide_gamut_profile())
    assert realsr(source, "-o", tmp_path / f"out{suffix}", "--strip-metadata") == 0
    with Image.open(tmp_path / f"out{suffix}") as im:
        assert im.size == (28, 20)  # the pixels are still turned
        assert "icc_profile" not in im.info and xmp_of(im) is None
        assert MAKE not in im.getexif() and ORIENTATION not in im.getexif()


def test_dpi_follows_the_output_size(tmp_path):
    rng = np.random.default_rng(11)
    source = save_photo(tmp_path / "in.jpg", rng.integers(0, 256, (7, 5, 3), dtype=np.uint8),
                        wide_gamut_profile(), orientation=1)
    assert realsr(source, "-o", tmp_path / "out.jpg", "--width", "10", "--height", "21") == 0
    with Image.open(tmp_path / "out.jpg") as im:
        assert im.size == (10, 21)
        assert im.info["dpi"] == pytest.approx((72 * 2, 96 * 3), abs=0.5)


def test_16bit_png_keeps_its_metadata(tmp_path):
    rng = np.random.default_rng(16)
    icc = wide_gamut_profile()
    source = save_photo(tmp_path / "in.png", rng.integers(0, 256, (7, 5, 3), dtype=np.uint8), icc, orientation=1)
    deep = rng.integers(0, 65536, (7, 5, 3), dtype=np.uint16)  # the same metadata on 16-bit pixels
    ok, encoded = cv2.imencode(".png", deep[..., ::-1])
    with Image.open(source) as im:
        exif, dpi = im.info["exif"], im.info["dpi"]
    sixteen = tmp_path / "deep.png"
    sixteen.write_bytes(_png_with_chunks(encoded.tobytes(), icc, exif, dpi))
    assert read_image(sixteen).dtype == np.uint16
    assert realsr(sixteen, "-o", tmp_path / "out.png") == 0
    out = cv2.imread(str(tmp_path / "out.png"), cv2.IMREAD_UNCHANGED)[..., ::-1]
    np.testing.assert_array_equal(out, np.repeat(np.repeat(deep, 4, 0), 4, 1))
    with Image.open(tmp_path / "out.png") as im:
        assert im.info["icc_profile"] == icc and im.getexif()[MAKE] == "RealSR Camera"
        assert im.info["dpi"] == pytest.approx((288, 384), rel=1e-3)


def _png_with_chunks(png: bytes, icc: bytes, exif: bytes, dpi) -> bytes:
    from realsr_fast.io.metadata import ImageMetadata, png_with_metadata

    return png_with_metadata(png, ImageMetadata(exif, icc, None, dpi))


def test_icc_profile_of_another_colour_space_is_left_out(tmp_path):
    """Grey pixels cannot carry an RGB profile (viewers would reject or misread the file)."""
    rng = np.random.default_rng(3)
    grey = Image.fromarray(rng.integers(0, 256, (6, 4), dtype=np.uint8))
    grey.save(tmp_path / "g.jpg", icc_profile=wide_gamut_profile())
    assert read_metadata(tmp_path / "g.jpg").icc_profile is not None
    assert realsr(tmp_path / "g.jpg", "-o", tmp_path / "out.jpg") == 0
    with Image.open(tmp_path / "out.jpg") as im:
        assert im.mode == "L" and "icc_profile" not in im.info


def test_quality(tmp_path):
    rng = np.random.default_rng(95)
    Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(tmp_path / "in.png")
    sizes = {}
    for quality in (None, 20, 100):
        target = tmp_path / f"q{quality}.webp"
        assert realsr(tmp_path / "in.png", "-o", target, *([] if quality is None else ["--quality", quality])) == 0
        sizes[quality] = target.stat().st_size
    assert sizes[20] < sizes[None] < sizes[100]
    reference = io.BytesIO()  # the default is quality 95
    upscaled = np.asarray(Image.open(tmp_path / "in.png")).repeat(4, 0).repeat(4, 1)
    Image.fromarray(upscaled).save(reference, "WEBP", quality=95)
    assert sizes[None] == len(reference.getvalue())


def test_heic_input(tmp_path):
    pillow_heif = pytest.importorskip("pillow_heif")
    rng = np.random.default_rng(12)
    image = Image.fromarray(rng.integers(0, 256, (16, 12, 3), dtype=np.uint8))
    try:
        pillow_heif.from_pillow(image).save(tmp_path / "photo.heic", quality=90)
    except Exception as exc:  # a pillow-heif build without an HEVC encoder
        pytest.skip(f"cannot write HEIC here: {exc}")
    assert realsr(tmp_path / "photo.heic", "-o", tmp_path / "out") == 0
    with Image.open(tmp_path / "out" / "photo.jpg") as im:
        assert im.format == "JPEG" and im.size == (48, 64)


def test_heic_without_pillow_heif_is_one_clear_error(tmp_path, monkeypatch, capsys):
    (tmp_path / "photo.heic").write_bytes(b"\0\0\0\x18ftypheic" + bytes(64))
    monkeypatch.setitem(sys.modules, "pillow_heif", None)  # import pillow_heif raises ImportError
    with pytest.raises(RealSRError, match=r"pip install 'realsr_fast\[heif\]'"):
        read_image(tmp_path / "photo.heic")
    assert realsr(tmp_path / "photo.heic", "-o", tmp_path / "out") == 1
    assert "pillow-heif" in capsys.readouterr().err
