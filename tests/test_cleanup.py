"""Clean-up (HR = bicubic 1/2 of the photo, cropped to a multiple of 4) and `realsr cleanup`."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from realsr_fast.cli import main
from realsr_fast.data.cleanup import clean_photo, cleanup_folder
from realsr_fast.data.imresize import imresize
from realsr_fast.errors import RealSRError
from realsr_fast.io import read_image, write_image


def pil_bicubic(image: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """PIL's float bicubic resize per channel (a = -0.5, antialiased; truncates at the edges)."""
    channels = [Image.fromarray(image[..., c].astype(np.float32) / 255, mode="F").resize((out_w, out_h), Image.BICUBIC)
                for c in range(image.shape[2])]
    return np.stack([np.asarray(c, dtype=np.float64) for c in channels], axis=-1)


def tap_free_interior(in_len: int, out_len: int, factor: int) -> np.ndarray:
    """Output positions whose 4*factor taps all lie inside the image (PIL and MATLAB agree there)."""
    centre = (np.arange(out_len) + 0.5) * factor - 0.5
    return (centre - 2 * factor >= 0) & (centre + 2 * factor <= in_len - 1)


@pytest.mark.parametrize("h, w", [(101, 77), (64, 96), (57, 130)])
def test_clean_photo_matches_pil_inside_and_crops_bottom_right(rng, h, w):
    photo = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    hr = clean_photo(photo, factor=2, multiple=4)
    out_h, out_w = -(-h // 2), -(-w // 2)
    assert hr.shape == (out_h - out_h % 4, out_w - out_w % 4, 3) and hr.dtype == np.uint8
    # MATLAB's geometry at scale 1/2 puts output i at input 2i + 0.5 whatever the size, so an odd
    # side's outputs are those of the even side below it (PIL would use the scale (h/2)/h instead).
    even_h, even_w = h // 2 * 2, w // 2 * 2
    want = np.clip(pil_bicubic(photo[:even_h, :even_w], even_h // 2, even_w // 2), 0, 1) * 255
    rows = tap_free_interior(even_h, even_h // 2, 2)[: hr.shape[0]]
    cols = tap_free_interior(even_w, even_w // 2, 2)[: hr.shape[1]]
    inner = np.ix_(rows, cols)
    got, want = hr[inner].astype(np.int64), want[: hr.shape[0], : hr.shape[1]][inner]
    away_from_ties = np.abs(want - np.floor(want) - 0.5) > 1e-3
    assert got.size > 100
    np.testing.assert_array_equal(got[away_from_ties], np.round(want[away_from_ties]))


def test_clean_photo_is_clamped_rounded_imresize_over_the_whole_image(rng):
    photo = rng.integers(0, 256, (45, 38, 3), dtype=np.uint8)
    x = torch.from_numpy(photo).permute(2, 0, 1)[None]
    want = torch.round(imresize(x, 0.5).clamp(0, 1) * 255)[0].permute(1, 2, 0).numpy()[:20, :16]
    np.testing.assert_array_equal(clean_photo(photo, 2, 4), want)


def test_grey_alpha_and_16_bit_photos_become_rgb(rng):
    rgb = rng.integers(0, 256, (40, 44, 3), dtype=np.uint8)
    grey = rgb[..., :1]
    alpha = rng.integers(0, 256, (40, 44, 1), dtype=np.uint8)
    np.testing.assert_array_equal(clean_photo(np.concatenate([rgb, alpha], axis=2)), clean_photo(rgb))
    grey_hr = clean_photo(grey)
    assert grey_hr.shape[2] == 3 and (grey_hr == grey_hr[..., :1]).all()
    deep = rgb.astype(np.uint16) * 257  # the same picture in 16 bits
    np.testing.assert_array_equal(clean_photo(deep), clean_photo(rgb))


def test_factor_and_too_small_photos(rng):
    photo = rng.integers(0, 256, (90, 90, 3), dtype=np.uint8)
    assert clean_photo(photo, factor=3, multiple=4).shape == (28, 28, 3)
    with pytest.raises(RealSRError, match="too small"):
        clean_photo(photo[:5, :5], factor=2, multiple=4)


def folder_digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture
def photos(tmp_path, rng) -> Path:
    folder = tmp_path / "photos"
    for name, size in [("a.png", (64, 72)), ("b.jpg", (50, 41))]:
        write_image(folder / name, rng.integers(0, 256, (*size, 3), dtype=np.uint8))
    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    return folder


def test_folder_cleans_skips_bad_files_resumes_and_leaves_sources_alone(photos, tmp_path):
    before = folder_digest(photos)
    out = tmp_path / "hr"
    report = cleanup_folder(photos, out, progress=False)
    assert [p.name for p in report.done] == ["a.png", "b.jpg"]
    assert len(report.failed) == 1 and "broken.png" in report.failed[0][1]
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png"]
    np.testing.assert_array_equal(read_image(out / "b.png"), clean_photo(read_image(photos / "b.jpg")))
    assert folder_digest(photos) == before

    again = cleanup_folder(photos, out, progress=False)
    assert len(again.skipped) == 2 and not again.done
    assert len(cleanup_folder(photos, out, overwrite=True, progress=False).done) == 2


def test_folder_errors(tmp_path, photos):
    (tmp_path / "empty").mkdir()
    with pytest.raises(RealSRError, match="no photos found"):
        cleanup_folder(tmp_path / "empty", tmp_path / "out")
    with pytest.raises(RealSRError, match="no such folder"):
        cleanup_folder(tmp_path / "missing", tmp_path / "out")
    with pytest.raises(RealSRError, match="is a source folder"):
        cleanup_folder(photos, photos)
    write_image(photos / "a.jpg", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(RealSRError, match="share the name 'a'"):
        cleanup_folder(photos, tmp_path / "out")


def test_cli_reports_failures_with_exit_code_1(photos, tmp_path, capsys):
    assert main(["cleanup", str(photos), "-o", str(tmp_path / "hr"), "--factor", "2"]) == 1
    err = capsys.readouterr().err
    assert "2 images cleaned" in err and "broken.png" in err
    (photos / "broken.png").unlink()
    assert main(["cleanup", str(photos), "-o", str(tmp_path / "hr")]) == 0
    assert main(["cleanup", str(tmp_path / "nowhere"), "-o", str(tmp_path / "hr")]) == 1
    assert "no such folder" in capsys.readouterr().err
