"""`realsr adapt` reports honestly and finds noise in any photos: three disjoint roles (train /
validation / test), validation and test LR made from the training photos' kernels and noise only,
no choice reads a test photo; the noise source ladder (official rule, adapted rule, fitted model)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from realsr_fast.adaptation import job, scoring
from realsr_fast.cli import main
from realsr_fast.data import noise_source
from realsr_fast.data.kernel_bank import load_kernel_bank
from realsr_fast.data.noise_bank import load_noise_bank
from realsr_fast.data.split import split_roles
from realsr_fast.errors import RealSRError
from realsr_fast.io import write_image
from realsr_fast.train import batches as train_data

TINY = ["generator.init=null", "generator.nf=8", "generator.nb=1", "generator.gc=4", "data.patch=32", "data.batch=2",
        "optim.lr_g=3e-3", "val.every=1", "val.crop=32", "run.checkpoint_every=1", "run.progress=false"]


def tiny_args(photos, out, *extra):
    args = ["adapt", str(photos), "-o", str(out), "--iterations", "1", "--device", "cpu", "--quiet", *extra]
    return args + [item for setting in TINY for item in ("--set", setting)]


def noisy_photos(folder, rng, count, side, sigma, textured=False):
    """Smooth colour gradients (plus a strong texture everywhere when `textured`) with Gaussian noise."""
    folder.mkdir()
    y, x = np.mgrid[0:side, 0:side].astype(float)
    for i in range(count):
        level = rng.uniform(60, 190, 3)
        image = level + 0.1 * (x + y)[..., None]
        if textured:
            image = image + 40 * (np.sin(x / 2.0 + i) * np.sin(y / 3.0))[..., None]
        image = image + rng.normal(0, sigma, image.shape)
        write_image(folder / f"photo{i}.png", np.clip(np.round(image), 0, 255).astype(np.uint8))


def test_roles_are_disjoint_deterministic_and_nonempty_from_three_photos():
    for count in (3, 4, 7, 9, 30):
        names = [f"img{i:02d}" for i in range(count)]
        roles = split_roles(names, 0.2, seed=1)
        assert roles == split_roles(list(reversed(names)), 0.2, seed=1)  # order of the listing does not matter
        parts = [set(roles.train), set(roles.val), set(roles.test)]
        assert all(parts) and sorted(roles.train + roles.val + roles.test) == names
        assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    two = split_roles(["a", "b"], 0.2)
    assert len(two.train) == len(two.val) == 1 and two.test == []
    with pytest.raises(RealSRError, match="at least 2 photos"):
        split_roles(["only"], 0.2)  # refused before any work: nothing would choose the checkpoint


def test_test_lr_uses_training_kernels_and_noise_only_and_no_choice_reads_test_photos(tmp_path, rng, monkeypatch):
    """A distinctive kernel estimate for each held photo (validation or test) never reaches the bank
    that makes the validation and test LR; the noise comes from training photos; while the base and
    the checkpoint are chosen no test image is read."""
    photos, out, estimates = tmp_path / "photos", tmp_path / "out", tmp_path / "kernels"
    noisy_photos(photos, rng, 5, 96, 1.0)
    roles = split_roles([f"photo{i}" for i in range(5)], 0.2, seed=0)
    distinctive = np.zeros((33, 33))
    distinctive[0, 0] = 1.0  # a corner spike: no training kernel looks like it
    for i in range(5):
        (estimates / f"photo{i}").mkdir(parents=True)
        name = f"photo{i}"
        kernel = distinctive if name in roles.val + roles.test else np.outer(np.hanning(33), np.hanning(33))
        np.save(estimates / name / f"{name}_kernel_x4.npy", kernel / kernel.sum())

    reads, phase = [], {"choosing": False}
    real_read = train_data.read_image

    def recording_read(path, *args, **kwargs):
        if phase["choosing"]:
            reads.append(str(path))
        return real_read(path, *args, **kwargs)

    def while_choosing(function):
        def wrapped(*args, **kwargs):
            phase["choosing"] = True
            try:
                return function(*args, **kwargs)
            finally:
                phase["choosing"] = False
        return wrapped

    monkeypatch.setattr(train_data, "read_image", recording_read)
    monkeypatch.setattr(job, "fine_tune", while_choosing(job.fine_tune))
    monkeypatch.setattr(job, "choose_base", while_choosing(job.choose_base))
    assert main(tiny_args(photos, out, "--kernels", str(estimates))) == 0

    summary = json.loads((out / "summary.json").read_text())
    assert [summary["photos"][k] for k in ("train", "validation", "test")] == [roles.train, roles.val, roles.test]
    bank = load_kernel_bank(summary["settings"]["kernels"], 4)
    assert sorted(p.parent.name for p in bank.files) == roles.train
    assert all(float(k[0, 0]) < 0.5 for k in bank.kernels)  # the distinctive kernel is absent
    assert summary["kernels"]["left_out"] == sorted(roles.val + roles.test)
    manifest = json.loads((out / "noise" / "manifest.json").read_text())
    assert manifest["patches"] and {e["file"].split("_")[0] for e in manifest["patches"]} <= set(roles.train)
    assert reads and not [r for r in reads if any(name in r for name in roles.test) or "/test/" in r]
    assert set(summary["test"]["scores"]) >= {"bicubic", "df2k", "adapted"} and summary["test"]["photos"] == roles.test
    html = (out / "report.html").read_text()
    assert "never used for a choice" in html and "Starting model" in html


def test_auto_base_is_chosen_on_validation_photos_only(tmp_path, monkeypatch):
    if scoring.available(scoring.REALESRGAN) is not None:
        pytest.skip("realesrgan-x4plus is not installed (the realesrgan extra)")
    from realsr_fast.train.config import PRESET_DIR, load_config

    config = load_config(PRESET_DIR / "adapt.yaml", ["run.device=cpu", "data.hr=builtin:samples"])
    folders = []
    monkeypatch.setattr(scoring, "make_pairs", lambda config, folder: folders.append(folder) or [])
    fake = {"psnr": [30.0, 31.0]}
    monkeypatch.setattr(scoring, "score", lambda upscale, pairs, scale: {"psnr": fake["psnr"].pop(0)})
    choice = scoring.choose_base("auto", config, tmp_path / "val")
    assert folders == [tmp_path / "val"]
    assert choice.chosen == scoring.REALESRGAN and "31.00 dB" in choice.why


def reference_sigma(a, b, intensity):
    return np.sqrt(np.asarray(a) * intensity + np.asarray(b))


def test_fitted_noise_model_recovers_a_signal_dependent_sigma(rng):
    """Flat blocks and a textured half, noise of variance a*I + b per channel: the fit's sigma is
    within 8 % of the truth at low, middle and high intensities."""
    a, b = np.array([0.10, 0.05, 0.20]), np.array([2.0, 5.0, 1.0])
    images = []
    for _ in range(3):
        y, x = np.mgrid[0:256, 0:256]
        clean = np.zeros((256, 256, 3))
        for i in range(4):
            for j in range(4):
                clean[64 * i:64 * (i + 1), 64 * j:64 * (j + 1)] = rng.uniform(20, 235, 3)
        clean[:, 128:] = np.clip(clean[:, 128:] + 30 * (np.sin(x / 5.0) * np.sin(y / 7.0))[:, 128:, None], 15, 240)
        noisy = clean + rng.standard_normal(clean.shape) * reference_sigma(a, b, clean)
        images.append(np.clip(np.round(noisy), 0, 255).astype(np.uint8))
    model = noise_source.fit_noise_model(images)
    for level in (50.0, 128.0, 200.0):
        got, want = model.sigma(np.full(3, level)), reference_sigma(a, b, level)
        assert np.all(np.abs(got / want - 1) < 0.08), (level, got, want)


def test_patch_ladder_picks_a_smaller_patch_on_small_noisy_photos(tmp_path, rng):
    noisy_photos(tmp_path / "photos", rng, 3, 100, 2.0)  # flat enough for the official rule, too small for 256/128
    choice = noise_source.choose_noise(tmp_path / "photos", tmp_path / "noise", 8, progress=False)
    assert (choice.source, choice.patch) == ("official rule", 32)
    assert [t[1] for t in choice.tried] == [256, 128, 64, 32]
    assert load_noise_bank(tmp_path / "noise").patches.shape[1:] == (3, 32, 32)


def test_stronger_noise_takes_the_adapted_rule_and_no_flat_region_the_fitted_model(tmp_path, rng):
    # per-channel std 9: grey variance 81 * (0.299^2 + 0.587^2 + 0.114^2) = 36 > 20, the official rule keeps nothing
    noisy_photos(tmp_path / "strong", rng, 3, 128, 9.0)
    choice = noise_source.choose_noise(tmp_path / "strong", tmp_path / "noise1", 8, progress=False)
    assert choice.source == "adapted rule" and 20 < choice.max_var < 80 and 5 < choice.sigma < 7
    noisy_photos(tmp_path / "busy", rng, 3, 128, 9.0, textured=True)
    choice = noise_source.choose_noise(tmp_path / "busy", tmp_path / "noise2", 8, progress=False)
    assert choice.source == "fitted model" and 8 < float(np.mean(choice.model.sigma(np.full(3, 128.0)))) < 10
    bank = load_noise_bank(tmp_path / "noise2")
    assert bank.patches.shape == (noise_source.SYNTHETIC_COUNT, 3, 64, 64)
    assert "fitted model" in choice.describe()


@pytest.mark.slow
def test_seven_small_noisy_photos_run_end_to_end_without_noise_flags(tmp_path, rng):
    """The new user's case: small photos with sensor noise and no flat region; no --noise-patch."""
    photos, out = tmp_path / "photos", tmp_path / "out"
    noisy_photos(photos, rng, 7, 96, 8.0, textured=True)
    assert main(tiny_args(photos, out, "--kernel-iters", "2")) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["noise"]["source"] == "fitted model" and len(summary["photos"]["test"]) >= 1
    assert "psnr" in summary["test"]["scores"]["adapted"]
