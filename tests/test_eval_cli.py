"""`realsr eval` end to end on small images written in tmp_path."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from skimage import data
from skimage.metrics import peak_signal_noise_ratio

from realsr_fast import cli
from realsr_fast.io import read_image, write_image
from realsr_fast.metrics import psnr, ssim


@pytest.fixture
def main(monkeypatch):
    """cli.main with only this verb registered, so the test does not depend on other verbs."""
    monkeypatch.setattr(cli, "VERBS", ("eval",))
    return cli.main


def degrade(image: np.ndarray, seed: int, sigma: float = 6.0) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0, sigma, image.shape)
    return np.clip(image + noise, 0, 255).round().astype(np.uint8)


@pytest.fixture
def folders(tmp_path):
    """GT: a real photo crop, a random image, a grey image; SR: noisy copies, one named `_x4`."""
    gt = {
        "photo": data.astronaut()[100:160, 200:270],
        "random": np.random.default_rng(0).integers(0, 256, (48, 40, 3), dtype=np.uint8),
        "grey": data.camera()[::8, ::8][:, :, None],
    }
    sr = {name: degrade(image, seed) for seed, (name, image) in enumerate(gt.items())}
    for name in gt:
        write_image(tmp_path / "gt" / f"{name}.png", gt[name])
    write_image(tmp_path / "sr" / "photo_x4.png", sr["photo"])
    write_image(tmp_path / "sr" / "random.png", sr["random"])
    write_image(tmp_path / "sr" / "grey-RealSR.png", sr["grey"])
    return tmp_path, sr, gt


def test_eval_is_dispatched_by_the_real_command_line(capsys):
    """Through the unpatched registry (the `main` fixture narrows it): `realsr eval --help` reaches eval's parser."""
    with pytest.raises(SystemExit) as stop:
        cli.main(["eval", "--help"])
    assert stop.value.code == 0
    usage = capsys.readouterr().out
    assert "--sr" in usage and "--gt" in usage and "--crop-border" in usage


def test_scores_table_json_and_csv(main, folders, capsys):
    root, sr, gt = folders
    before = {p: p.read_bytes() for p in root.rglob("*.png")}
    code = main(["eval", "--sr", str(root / "sr"), "--gt", str(root / "gt"), "--crop-border", "4", "--rgb",
                 "--json", str(root / "out" / "scores.json"), "--csv", str(root / "out" / "scores.csv")])
    out = capsys.readouterr()
    assert code == 0, out.err
    document = json.loads((root / "out" / "scores.json").read_text())
    by_sr_name = {image["sr"].split("/")[-1]: image for image in document["images"]}
    assert set(by_sr_name) == {"photo_x4.png", "random.png", "grey-RealSR.png"}
    for sr_name, gt_name in [("photo_x4.png", "photo"), ("random.png", "random"), ("grey-RealSR.png", "grey")]:
        row = by_sr_name[sr_name]
        assert row["gt"].endswith(f"{gt_name}.png")
        assert row["psnr_y"] == pytest.approx(psnr(sr[gt_name], gt[gt_name], 4), abs=1e-12)
        assert row["ssim_y"] == pytest.approx(ssim(sr[gt_name], gt[gt_name], 4), abs=1e-12)
        rgb_expected = peak_signal_noise_ratio(gt[gt_name][4:-4, 4:-4], sr[gt_name][4:-4, 4:-4], data_range=255)
        assert row["psnr_rgb"] == pytest.approx(rgb_expected, abs=1e-9)
    for metric in ("psnr_y", "ssim_y", "psnr_rgb", "ssim_rgb"):
        expected_mean = np.mean([image[metric] for image in document["images"]])
        assert document["mean"][metric] == pytest.approx(expected_mean, abs=1e-12)
    assert document["settings"]["crop_border"] == 4 and document["problems"] == []

    rows = list(csv.DictReader((root / "out" / "scores.csv").open()))
    assert [r["image"] for r in rows] == [image["name"] for image in document["images"]] + ["mean"]
    assert float(rows[-1]["psnr_y"]) == pytest.approx(document["mean"]["psnr_y"], abs=1e-12)

    lines = out.out.splitlines()
    assert "PSNR-Y" in lines[0] and "SSIM-RGB" in lines[0]
    assert lines[-1].split()[:2] == ["mean", f"{document['mean']['psnr_y']:.2f}"]
    assert {p: p.read_bytes() for p in root.rglob("*.png")} == before  # inputs untouched
    assert not list((root / "out").glob(".*tmp"))  # no temporary files left


def test_problems_are_reported_and_the_rest_still_scored(main, folders, capsys):
    root, sr, gt = folders
    write_image(root / "sr" / "orphan.png", sr["random"])  # no GT
    write_image(root / "gt" / "lonely.png", gt["random"])  # no SR
    write_image(root / "gt" / "small.png", gt["random"])
    write_image(root / "sr" / "small.png", gt["random"][:45, :38])  # GT not cropped to the scale
    (root / "sr" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    write_image(root / "gt" / "broken.png", gt["random"])
    code = main(["eval", "--sr", str(root / "sr"), "--gt", str(root / "gt"), "--json", str(root / "s.json")])
    err = capsys.readouterr().err
    assert code == 1
    assert "orphan.png: no GT image" in err
    assert "lonely.png: no SR image" in err
    assert "small.png: size 38x45 differs from the GT's 40x48" in err and "crop it" in err
    assert "broken.png: not an image" in err
    document = json.loads((root / "s.json").read_text())
    assert {image["name"] for image in document["images"]} == {"photo_x4", "random", "grey-RealSR"}
    assert len(document["problems"]) == 4


def test_identical_images_give_infinite_psnr(main, tmp_path, capsys):
    image = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    write_image(tmp_path / "gt" / "a.png", image)
    write_image(tmp_path / "sr" / "a.png", image)
    code = main(["eval", "--sr", str(tmp_path / "sr"), "--gt", str(tmp_path / "gt"),
                 "--json", str(tmp_path / "s.json")])
    assert code == 0
    assert "inf" in capsys.readouterr().out
    document = json.loads((tmp_path / "s.json").read_text())
    assert document["images"][0]["psnr_y"] is None and document["images"][0]["ssim_y"] == pytest.approx(1.0)


def test_lpips_unavailable_is_a_note_not_a_failure(main, folders, capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "empty_hub"))
    root, _, _ = folders
    code = main(["eval", "--sr", str(root / "sr"), "--gt", str(root / "gt"), "--lpips"])
    out = capsys.readouterr()
    assert code == 0
    assert "note: LPIPS skipped" in out.err
    assert "LPIPS" not in out.out.splitlines()[0]


def test_sixteen_bit_ground_truth_is_scored_on_the_same_scale(main, tmp_path, capsys):
    gt8 = np.random.default_rng(2).integers(0, 256, (30, 30, 3), dtype=np.uint8)
    write_image(tmp_path / "gt" / "a.png", gt8.astype(np.uint16) * 257)  # the same levels in 16 bits
    sr = degrade(gt8, seed=3)
    write_image(tmp_path / "sr" / "a.png", sr)
    code = main(["eval", "--sr", str(tmp_path / "sr"), "--gt", str(tmp_path / "gt"), "--crop-border", "0",
                 "--json", str(tmp_path / "s.json")])
    assert code == 0, capsys.readouterr().err
    assert read_image(tmp_path / "gt" / "a.png").dtype == np.uint16
    document = json.loads((tmp_path / "s.json").read_text())
    assert document["images"][0]["psnr_y"] == pytest.approx(psnr(sr, gt8), abs=1e-9)


@pytest.mark.parametrize("case", ["missing", "empty", "no_pairs"])
def test_folder_errors_are_one_clear_message(main, tmp_path, capsys, case):
    (tmp_path / "gt").mkdir()
    (tmp_path / "sr").mkdir()
    if case != "empty":
        write_image(tmp_path / "gt" / "a.png", np.zeros((16, 16, 3), np.uint8))
    if case == "no_pairs":
        write_image(tmp_path / "sr" / "b.png", np.zeros((16, 16, 3), np.uint8))
    sr = tmp_path / ("nowhere" if case == "missing" else "sr")
    code = main(["eval", "--sr", str(sr), "--gt", str(tmp_path / "gt")])
    err = capsys.readouterr().err
    assert code == 1
    expected = {"missing": "no such file or folder", "empty": "no images found", "no_pairs": "same name"}[case]
    assert expected in err and "Traceback" not in err
