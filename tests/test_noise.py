"""Noise mining (`realsr noise`) against the literal RealSR loop, and loading the noise bank."""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from realsr_fast.cli import main
from realsr_fast.data.noise_bank import load_noise_bank
from realsr_fast.data.noise_mining import NOISE_TRACKS, NoiseSettings, find_noise_patches, mine_noise_folder
from realsr_fast.errors import RealSRError
from realsr_fast.io import read_image, write_image


def literal_noise_loop(rgb: np.ndarray, sp: int, stride: int, max_var: float, min_mean: float, last_included=True):
    """Real-SR's collect_noise.noise_patch (PIL 'L', np.var, np.mean), with a stride argument and,
    unless `last_included` is False, the loop bound fixed to reach the last full patch."""
    grey = np.array(Image.fromarray(rgb).convert("L"))
    h, w = grey.shape
    end_h, end_w = (h - sp + 1, w - sp + 1) if last_included else (h - sp, w - sp)
    kept = []
    for i in range(0, end_h, stride):
        for j in range(0, end_w, stride):
            patch = grey[i:i + sp, j:j + sp]
            if np.var(patch) < max_var and np.mean(patch) > min_mean:
                kept.append((i, j, float(np.mean(patch)), float(np.var(patch))))
    return kept


def photo_with_flat_regions(rng, h: int, w: int, flats: list[tuple[int, int, int, float, float]]) -> np.ndarray:
    """Textured photo with flat noisy squares (top, left, side, level, noise sigma)."""
    photo = rng.integers(0, 256, (h, w, 3)).astype(np.float64)
    for top, left, side, level, sigma in flats:
        photo[top:top + side, left:left + side] = level + rng.normal(0, sigma, (side, side, 3))
    return np.clip(np.round(photo), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("stride", [64, 48])
def test_kept_patches_match_the_literal_loop(rng, stride):
    flats = [(0, 0, 130, 120, 2.5), (150, 300, 150, 40, 1.5), (200, 0, 100, 200, 4.0), (236, 456, 64, 90, 3.0)]
    photo = photo_with_flat_regions(rng, 300, 520, flats)
    settings = NoiseSettings(patch=64, stride=stride, max_var=20, min_mean=50)
    result = find_noise_patches(photo, settings)
    want = literal_noise_loop(photo, 64, stride, 20, 50)
    assert len(want) >= 4
    assert [(p.y, p.x) for p in result.kept] == [(y, x) for y, x, _, _ in want]
    np.testing.assert_allclose([(p.mean, p.var) for p in result.kept], [(m, v) for _, _, m, v in want], rtol=1e-5, atol=1e-4)
    assert result.candidates == ((300 - 64) // stride + 1) * ((520 - 64) // stride + 1)
    assert result.hint is None


def test_last_row_and_column_are_kept_unlike_the_reference_loop(rng):
    photo = photo_with_flat_regions(rng, 128, 192, [(64, 128, 64, 100, 2.0)])
    kept = [(p.y, p.x) for p in find_noise_patches(photo, NoiseSettings(64, 64)).kept]
    assert kept == [(64, 128)]
    assert literal_noise_loop(photo, 64, 64, 20, 0, last_included=False) == []


def overlap(a, b, side: int) -> float:
    return max(0, side - abs(a.y - b.y)) * max(0, side - abs(a.x - b.x)) / side**2


@pytest.mark.parametrize("fraction, cap", [(0.25, None), (0.0, None), (0.5, 3)])
def test_dense_strides_keep_greedy_flattest_patches_within_the_overlap_limit(rng, fraction, cap):
    sigma = np.linspace(0.5, 4, 10)
    flats = [(0, 0, 200, 128, 1.0)] + [(40 * (i // 5), 220 + 30 * (i % 5), 40, 128, s) for i, s in enumerate(sigma[:6])]
    photo = photo_with_flat_regions(rng, 220, 400, flats)
    settings = NoiseSettings(patch=48, stride=16, max_var=20, max_per_image=cap, max_overlap=fraction)
    kept = find_noise_patches(photo, settings).kept
    everything = find_noise_patches(photo, NoiseSettings(patch=48, stride=16, max_var=20)).kept
    assert 1 < len(kept) < len(everything)
    assert min(p.var for p in kept) == min(p.var for p in everything)
    for i, a in enumerate(kept):
        assert all(overlap(a, b, 48) <= fraction for b in kept[i + 1:])
    if cap is not None:
        assert len(kept) == cap
        return
    for candidate in everything:  # greedy: a patch left out overlaps a flatter kept one too much
        if candidate not in kept:
            assert any(overlap(candidate, k, 48) > fraction and k.var <= candidate.var for k in kept)


def test_cap_without_overlap_limit_keeps_the_flattest(rng):
    photo = photo_with_flat_regions(rng, 256, 256, [(0, 0, 256, 128, 2.0)])
    everything = find_noise_patches(photo, NoiseSettings(patch=64, stride=64)).kept
    kept = find_noise_patches(photo, NoiseSettings(patch=64, stride=64, max_per_image=5)).kept
    assert sorted(p.var for p in kept) == sorted(p.var for p in everything)[:5]


def suggested(hint: str, option: str) -> float:
    return float(re.search(rf"{option} (-?[\d.]+) would keep", hint).group(1))


def test_hint_names_the_max_var_that_keeps_a_patch(rng):
    photo = photo_with_flat_regions(rng, 192, 192, [(0, 64, 64, 100, 8.0), (128, 0, 64, 150, 10.0)])
    settings = NoiseSettings(patch=64, stride=64, max_var=20)
    result = find_noise_patches(photo, settings)
    assert result.kept == [] and "--max-var" in result.hint
    value = suggested(result.hint, "--max-var")
    assert len(find_noise_patches(photo, NoiseSettings(64, 64, max_var=value)).kept) == 1
    assert len(find_noise_patches(photo, NoiseSettings(64, 64, max_var=value - 0.02)).kept) == 0


def test_hint_names_the_min_mean_that_keeps_a_patch(rng):
    photo = photo_with_flat_regions(rng, 128, 128, [(0, 0, 64, 30, 1.0)])
    result = find_noise_patches(photo, NoiseSettings(64, 64, min_mean=50))
    value = suggested(result.hint, "--min-mean")
    assert len(find_noise_patches(photo, NoiseSettings(64, 64, min_mean=value)).kept) == 1
    assert len(find_noise_patches(photo, NoiseSettings(64, 64, min_mean=value + 0.02)).kept) == 0


def test_hint_for_photos_smaller_than_a_patch(rng):
    result = find_noise_patches(rng.integers(0, 256, (100, 300, 3), dtype=np.uint8), NoiseSettings(256, 256))
    assert result.candidates == 0 and "smaller than one 256x256 patch; lower --patch" in result.hint


def test_bad_settings_raise():
    with pytest.raises(RealSRError, match="max-overlap"):
        NoiseSettings(max_overlap=1.5).check()
    with pytest.raises(RealSRError, match="max-per-image"):
        NoiseSettings(max_per_image=0).check()


@pytest.fixture
def photos(tmp_path, rng) -> Path:
    folder = tmp_path / "photos"
    write_image(folder / "a.png", photo_with_flat_regions(rng, 128, 192, [(0, 0, 64, 100, 2.0), (64, 128, 64, 80, 2.0)]))
    write_image(folder / "b.png", photo_with_flat_regions(rng, 128, 128, []))
    (folder / "c.jpg").write_bytes(b"not a jpeg")
    return folder


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_folder_writes_raw_patches_and_manifest(photos, tmp_path):
    before = digest(photos)
    out = tmp_path / "noise"
    report = mine_noise_folder(photos, out, NoiseSettings(64, 64), progress=False)
    assert report.patches == 2 and [p.name for p in report.done] == ["a.png", "b.png"]
    assert len(report.failed) == 1 and "c.jpg" in report.failed[0][1]
    assert any(note.startswith("b.png: no noise patch kept") for note in report.notes)
    manifest = json.loads((out / "manifest.json").read_text())
    assert [e["file"] for e in manifest["patches"]] == ["a_y0_x0.png", "a_y64_x128.png"]
    photo = read_image(photos / "a.png")
    for entry in manifest["patches"]:
        y, x = entry["y"], entry["x"]
        np.testing.assert_array_equal(read_image(out / entry["file"]), photo[y:y + 64, x:x + 64])
        grey = np.array(Image.fromarray(photo[y:y + 64, x:x + 64]).convert("L"))
        assert entry["source"] == str(photos / "a.png")
        assert entry["mean"] == pytest.approx(grey.mean(), rel=1e-6) and entry["var"] == pytest.approx(grey.var(), rel=1e-5)
    assert manifest["photos"]["b.png"]["kept"] == 0 and manifest["photos"]["b.png"]["hint"]
    assert digest(photos) == before


def test_cli_exit_codes_and_folder_hint(photos, tmp_path, capsys):
    out = str(tmp_path / "noise")
    assert main(["noise", str(photos), "-o", out, "--patch", "64", "--stride", "64"]) == 1  # c.jpg is broken
    assert "2 noise patch(es) kept" in capsys.readouterr().err
    (photos / "c.jpg").unlink()
    assert main(["noise", str(photos), "-o", out, "--patch", "64", "--stride", "64", "--quiet"]) == 0
    assert main(["noise", str(photos), "-o", str(tmp_path / "none"), "--patch", "64", "--max-var", "1"]) == 1
    err = capsys.readouterr().err
    assert "no patch qualified in any photo" in err and "--max-var" in err
    with pytest.raises(SystemExit):
        main(["noise", str(photos), "-o", out, "--max-overlap", "2"])
    assert "must be at most 1" in capsys.readouterr().err


def test_noise_bank_reads_the_manifest_or_every_image(photos, tmp_path, rng):
    out = tmp_path / "noise"
    mine_noise_folder(photos, out, NoiseSettings(64, 64), progress=False)
    write_image(out / "stale_y0_x0.png", rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    bank = load_noise_bank(out)
    assert bank.patches.shape == (2, 3, 64, 64) and bank.patches.dtype == torch.uint8
    np.testing.assert_array_equal(bank.patches[1].permute(1, 2, 0).numpy(), read_image(out / "a_y64_x128.png"))
    (out / "manifest.json").unlink()  # a Real-SR collect_noise.py folder: every image counts
    assert [p.name for p in load_noise_bank(out).files] == ["a_y0_x0.png", "a_y64_x128.png", "stale_y0_x0.png"]


def test_noise_bank_errors(tmp_path, rng):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(RealSRError, match="no noise patches"):
        load_noise_bank(empty)
    with pytest.raises(RealSRError, match="no such noise folder"):
        load_noise_bank(tmp_path / "missing")
    write_image(empty / "a.png", rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    write_image(empty / "b.png", rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    with pytest.raises(RealSRError, match="several sizes"):
        load_noise_bank(empty)


def test_existing_patch_files_are_kept_unless_overwrite(photos, tmp_path):
    (photos / "c.jpg").unlink()
    out = tmp_path / "noise"
    args = ["noise", str(photos), "-o", str(out), "--patch", "64", "--stride", "64", "--quiet"]
    assert main(args) == 0
    patch = out / "a_y0_x0.png"
    original = read_image(patch)
    write_image(patch, np.zeros_like(original))  # e.g. edited by hand since
    assert main(args) == 0
    assert not read_image(patch).any()
    assert main([*args, "--overwrite"]) == 0
    np.testing.assert_array_equal(read_image(patch), original)


def test_track_presets_set_the_thresholds(tmp_path, rng):
    """`--track dped` is RealSR's DPED thresholds (mean above 50): a flat patch of mean 40 is kept
    for DF2K and refused for DPED, unless an explicit --min-mean says otherwise."""
    flat = np.clip(40 + rng.normal(0, 1, (64, 64, 3)), 0, 255).round().astype(np.uint8)
    write_image(tmp_path / "photos" / "dark.png", flat)
    runs = {"df2k": ["--track", "df2k"], "dped": ["--track", "dped"], "dped30": ["--track", "dped", "--min-mean", "30"]}
    kept = {}
    for name, extra in runs.items():
        out = tmp_path / name
        main(["noise", str(tmp_path / "photos"), "-o", str(out), "--patch", "64", "--quiet", *extra])
        kept[name] = len(list(out.glob("*.png"))) if out.is_dir() else 0
    assert kept == {"df2k": 1, "dped": 0, "dped30": 1}
    assert (NOISE_TRACKS["dped"].min_mean, NOISE_TRACKS["df2k"].min_mean) == (50, 0)
