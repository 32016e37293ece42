"""`realsr adapt` end to end on the CPU with a tiny generator: the files, the held-out split, the
resume (no stage redone, training continues), and a held-out score that rises on a learnable case;
untrusted kernel estimates are not trained on (the constant fallback replaces them, and the
outputs say so), estimates whose trust was not checked (one seed) are used as they are."""
from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from scipy.signal import convolve2d

from realsr_fast.adaptation import job
from realsr_fast.cli import main
from realsr_fast.data.kernel_bank import load_kernel_bank
from realsr_fast.data.split import materialise, split_names
from realsr_fast.errors import RealSRError
from realsr_fast.io import read_image, write_image
from realsr_fast.kernel_estimation.estimate import estimate_kernel_folder
from realsr_fast.kernel_estimation.estimators import KernelSettings
from realsr_fast.kernel_estimation.fallback import FALLBACK_SIGMA, fallback_kernel, training_kernels
from realsr_fast.models.loading import load_model

# A tiny generator from scratch: its starting model is poor and smooth images are quickly learnt.
TINY = ["generator.init=null", "generator.nf=8", "generator.nb=1", "generator.gc=4", "data.patch=32", "data.batch=4",
        "optim.lr_g=3e-3", "val.every=4", "val.crop=64", "run.checkpoint_every=4", "run.progress=false"]


def smooth_photos(folder, rng, count=5, side=192):
    """Photos of smooth colour gradients plus slight noise: trivially learnable, flat enough to mine noise."""
    folder.mkdir()
    y, x = np.mgrid[0:side, 0:side] / side
    for i in range(count):
        a, b, c = rng.uniform(0.2, 0.8, size=(3, 3))
        image = np.stack([a[k] + 0.2 * b[k] * x + 0.2 * c[k] * y for k in range(3)], axis=2)
        image = image * 255 + rng.normal(0, 1.0, image.shape)
        write_image(folder / f"photo{i}.png", np.clip(np.round(image), 0, 255).astype(np.uint8))


def adapt_args(photos, out, iterations):
    args = ["adapt", str(photos), "-o", str(out), "--iterations", str(iterations), "--kernel-iters", "2",
            "--noise-patch", "16", "--held-out", "0.4", "--device", "cpu"]
    return args + [item for setting in TINY for item in ("--set", setting)]


@pytest.mark.slow
def test_adapt_end_to_end_split_files_resume_and_learning(tmp_path, rng):
    photos, out = tmp_path / "photos", tmp_path / "out"
    smooth_photos(photos, rng)
    assert main(adapt_args(photos, out, 8)) == 0

    summary = json.loads((out / "summary.json").read_text())
    train, held_out, test = (summary["photos"][role] for role in ("train", "validation", "test"))
    assert sorted(train + held_out + test) == [f"photo{i}" for i in range(5)] and len(held_out) == len(test) == 2
    assert not set(train) & set(held_out) and not set(test) & set(train + held_out)
    assert sorted(p.stem for p in (out / "split" / "val").iterdir()) == held_out
    assert sorted(p.stem for p in (out / "split" / "test").iterdir()) == test
    assert sorted(p.stem for p in (out / "split" / "train").iterdir()) == train
    for name in ("model.safetensors", "report.html", "curve.png", "curve.json"):
        assert (out / name).is_file(), name
    assert [row["iteration"] for row in summary["curve"]] == [0, 4, 8]
    html = (out / "report.html").read_text()
    assert "Learning curve" in html and "Before / after" in html and held_out[0] in html
    assert load_model(out / "model.safetensors").nf == 8  # what `realsr upscale --model` loads

    kernel_files = sorted((out / "kernels").rglob("*_kernel_x4.npy"))
    stamps = {p: p.stat().st_mtime_ns for p in [*kernel_files, *(out / "hr").iterdir()]}
    assert main(adapt_args(photos, out, 16)) == 0  # resumes: stages cached, training continues
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    summary = json.loads((out / "summary.json").read_text())
    assert [row["iteration"] for row in summary["curve"]] == [0, 4, 8, 12, 16]
    assert summary["iterations"] == 16
    # the learnable case: the held-out PSNR rises well above the random starting model's
    assert summary["best"]["psnr"] > summary["start"]["psnr"] + 3
    assert summary["best"]["iteration"] > 0


@pytest.mark.parametrize("extra, method", [([], "families"), (["--method", "kernelgan"], "kernelgan"),
                                           (["--method", "spectral"], "spectral")])
def test_adapt_estimates_kernels_with_the_asked_method(tmp_path, rng, monkeypatch, capsys, extra, method):
    photos = tmp_path / "photos"
    smooth_photos(photos, rng, count=3, side=96)
    asked = {}

    def estimate(photos, out, settings, **kwargs):
        asked.update(method=settings.method)
        raise RealSRError("stopped after the kernel stage was asked for")

    monkeypatch.setattr(job, "estimate_kernel_folder", estimate)
    assert main(adapt_args(photos, tmp_path / "out", 4) + extra) != 0
    assert asked["method"] == method
    assert "stopped after the kernel stage" in capsys.readouterr().err


def test_split_is_by_photo_stable_and_leaves_both_sides_nonempty():
    names = [f"img{i:03d}" for i in range(50)]
    train, held = split_names(names, 0.2, seed=3)
    assert len(held) == 10 and sorted(train + held) == names
    train_more, held_more = split_names(names + ["new"], 0.2, seed=3)
    assert len(set(held) & set(held_more)) >= 9  # a photo's side depends on its own name, not on the others
    small_train, small_held = split_names(["a", "b"], 0.01)
    assert len(small_train) == len(small_held) == 1
    assert split_names(names, 0.2, seed=4) != (train, held)


@pytest.mark.parametrize("names, fraction", [(["only"], 0.5), (["a", "b"], 0.0), (["a", "b"], 1.0)])
def test_split_refuses_what_cannot_be_split(names, fraction):
    with pytest.raises(RealSRError):
        split_names(names, fraction)


def reference_fallback_x4(sigma: float) -> np.ndarray:
    """From the spec: a 17x17 isotropic Gaussian centred at 8.5 (KernelGAN's x2 alignment), then
    the x4 kernel of two x2 steps: the kernel convolved with itself dilated by 2, centre 33x33."""
    d = np.arange(17) - 8.5
    line = np.exp(-0.5 * (d / sigma) ** 2)
    k2 = np.outer(line, line) / np.outer(line, line).sum()
    dilated = np.zeros((33, 33))
    dilated[::2, ::2] = k2
    big = convolve2d(dilated, k2)
    return big[8:-8, 8:-8] / big[8:-8, 8:-8].sum()


def write_estimates(folder, rng, verdicts: dict[str, dict | None]) -> dict[str, np.ndarray]:
    """`realsr kernels`' layout: `<photo>/<photo>_kernel_x4.npy` and `<photo>_report.json` (None: no report)."""
    kernels = {}
    for photo, report in verdicts.items():
        (folder / photo).mkdir(parents=True)
        kernel = rng.uniform(0, 1, (33, 33))
        kernels[photo] = kernel / kernel.sum()
        np.save(folder / photo / f"{photo}_kernel_x4.npy", kernels[photo])
        if report is not None:
            (folder / photo / f"{photo}_report.json").write_text(json.dumps(report))
    return kernels


VERDICTS = {
    "photo0": {"runs": 2, "seed_agreement_db": 31.5, "trusted": False},
    "photo1": {"runs": 2, "seed_agreement_db": 52.0, "trusted": True},
    "photo2": {"runs": 1},
    "photo3": None,
}


def test_fallback_is_the_documented_gaussian():
    assert np.abs(fallback_kernel(4) - reference_fallback_x4(FALLBACK_SIGMA)).max() < 1e-12
    x2 = fallback_kernel(2)
    assert x2.shape == (17, 17) and abs(x2.sum() - 1) < 1e-12


def test_training_kernels_replace_only_untrusted_estimates(tmp_path, rng):
    estimates = write_estimates(tmp_path / "estimates", rng, VERDICTS)
    (tmp_path / "used" / "stale").mkdir(parents=True)  # what an earlier run left is removed
    choices = {c.photo: c for c in training_kernels(tmp_path / "estimates", tmp_path / "used", 4)}
    assert [(c.used, c.trust) for c in choices.values()] == [
        ("fallback", "untrusted"), ("estimate", "trusted"), ("estimate", "not checked"), ("estimate", "not checked")]
    assert "31.5 dB < 45 dB" in choices["photo0"].why and "--seeds 2" in choices["photo2"].why
    assert not (tmp_path / "used" / "stale").exists()
    for photo, estimate in estimates.items():
        used = np.load(tmp_path / "used" / photo / f"{photo}_kernel_x4.npy")
        expected = reference_fallback_x4(FALLBACK_SIGMA) if photo == "photo0" else estimate
        assert np.abs(used - expected).max() < 1e-12, photo


def test_adapt_trains_on_the_fallback_and_reports_it(tmp_path, rng):
    photos, out = tmp_path / "photos", tmp_path / "out"
    smooth_photos(photos, rng, count=4, side=96)
    estimates = write_estimates(tmp_path / "kernels", rng, {f"photo{i}": v for i, v in enumerate(VERDICTS.values())})
    args = ["adapt", str(photos), "-o", str(out), "--iterations", "1", "--kernels", str(tmp_path / "kernels"),
            "--noise-patch", "16", "--held-out", "0.25", "--device", "cpu"]
    tiny = [s for s in TINY if not s.startswith(("val.every", "run.checkpoint_every"))] + ["val.every=1", "val.crop=32"]
    assert main(args + [item for setting in tiny for item in ("--set", setting)]) == 0

    summary = json.loads((out / "summary.json").read_text())
    train = summary["photos"]["train"]
    assert "photo0" in train and len(train) == 2  # seed 0 trains on photo0 (the untrusted estimate) and photo3
    assert summary["kernels"]["fell_back"] == ["photo0"] and summary["kernels"]["trust_checked"]
    assert summary["kernels"]["left_out"] == sorted(summary["photos"]["validation"] + summary["photos"]["test"])
    # the bank the Trainer read: the fallback in place of photo0's estimate, the other training photo's untouched,
    # the validation and test photos' estimates absent
    bank = load_kernel_bank(summary["settings"]["kernels"], 4)
    by_photo = {path.parent.name: kernel.double().numpy() for kernel, path in zip(bank.kernels, bank.files)}
    assert sorted(by_photo) == train
    assert np.abs(by_photo["photo0"] - reference_fallback_x4(FALLBACK_SIGMA)).max() < 1e-6
    for photo in train[1:]:
        assert np.abs(by_photo[photo] - estimates[photo]).max() < 1e-6, photo
    assert np.array_equal(np.load(tmp_path / "kernels" / "photo0" / "photo0_kernel_x4.npy"), estimates["photo0"])
    html = (out / "report.html").read_text()
    assert "1 of 2 estimates were not trusted" in html and "photo0 use the fallback" in html


def test_already_clean_photos_in_any_format_are_split_as_they_are(tmp_path, rng):
    """`--already-clean` takes the photos themselves as HR: JPEG, TIFF and WebP photos reach the split
    (and the Trainer) as the same files, not as `<name>.png` copies that the clean-up never wrote."""
    photos, out = tmp_path / "photos", tmp_path / "out"
    smooth_photos(photos, rng, count=4, side=96)
    for i, suffix in enumerate([".jpg", ".tif", ".webp"]):
        png = photos / f"photo{i}.png"
        write_image(png.with_suffix(suffix), read_image(png))
        png.unlink()
    write_estimates(tmp_path / "kernels", rng, {f"photo{i}": None for i in range(4)})
    args = ["adapt", str(photos), "-o", str(out), "--already-clean", "--iterations", "1", "--kernels",
            str(tmp_path / "kernels"), "--noise-patch", "16", "--held-out", "0.25", "--device", "cpu"]
    tiny = [s for s in TINY if not s.startswith(("val.every", "run.checkpoint_every"))] + ["val.every=1", "val.crop=32"]
    assert main(args + [item for setting in tiny for item in ("--set", setting)]) == 0

    summary = json.loads((out / "summary.json").read_text())
    assert sorted(sum(summary["photos"].values(), [])) == [f"photo{i}" for i in range(4)]
    assert not (out / "hr").exists()  # no clean-up
    split = sorted(path for role in ("train", "val", "test") for path in (out / "split" / role).iterdir())
    assert sorted(p.name for p in split) == ["photo0.jpg", "photo1.tif", "photo2.webp", "photo3.png"]
    for copy in split:
        assert copy.read_bytes() == (photos / copy.name).read_bytes(), copy
    held_out = summary["photos"]["validation"]
    assert [p.stem for p in (out / "split" / "val").iterdir()] == held_out


def test_materialise_replaces_a_stale_copy_and_names_a_missing_photo(tmp_path, rng):
    source, target = tmp_path / "source", tmp_path / "target"
    source.mkdir()
    image = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    for name in ("a.jpg", "b.png"):
        write_image(source / name, image)
    target.mkdir()
    write_image(target / "a.png", image)  # an earlier split's copy of `a` with another suffix
    write_image(target / "old.webp", image)
    materialise(source, ["a", "b"], target)
    assert sorted(p.name for p in target.iterdir()) == ["a.jpg", "b.png"]
    with pytest.raises(RealSRError, match="no image named 'c'"):
        materialise(source, ["a", "c"], target)


def test_one_seed_says_trust_was_not_checked(tmp_path, rng):
    write_estimates(tmp_path / "estimates", rng, {"a": {"runs": 1}, "b": {"runs": 1}})
    choices = training_kernels(tmp_path / "estimates", tmp_path / "used", 4)
    assert {c.trust for c in choices} == {"not checked"} and {c.used for c in choices} == {"estimate"}


def test_real_multi_seed_reports_are_read(tmp_path, rng):
    """The verdict comes from what `estimate_kernel_folder --seeds 2` really writes, not a hand-made report."""
    smooth_photos(tmp_path / "photos", rng, count=2, side=96)
    summary = estimate_kernel_folder(tmp_path / "photos", tmp_path / "kernels",
                                     KernelSettings(scale=4, iterations=2, runs=2, device="cpu"), progress=False)
    assert [path.stem for path in summary.done] == ["photo0", "photo1"]
    choices = training_kernels(tmp_path / "kernels", tmp_path / "used", 4)
    for choice in choices:
        report = json.loads((tmp_path / "kernels" / choice.photo / f"{choice.photo}_report.json").read_text())
        assert choice.trust == ("trusted" if report["trusted"] else "untrusted")
        assert choice.used == ("estimate" if report["trusted"] else "fallback")
        assert choice.agreement_db == report["seed_agreement_db"]


def test_gan_mode_trains_generator_and_discriminator_end_to_end(tmp_path, rng):
    """`realsr adapt --mode gan`: the paper's losses (L1 + VGG + RaGAN, the adapt_gan preset's weights)
    with a PatchGAN discriminator; tiny networks and a randomly initialised VGG keep it offline."""
    photos, out = tmp_path / "photos", tmp_path / "out"
    smooth_photos(photos, rng, count=4, side=96)
    write_estimates(tmp_path / "kernels", rng, {f"photo{i}": None for i in range(4)})
    args = ["adapt", str(photos), "-o", str(out), "--mode", "gan", "--iterations", "2", "--kernels",
            str(tmp_path / "kernels"), "--noise-patch", "16", "--held-out", "0.25", "--device", "cpu"]
    tiny = [s for s in TINY if not s.startswith(("val.every", "run.checkpoint_every"))]
    tiny += ["val.every=2", "val.crop=32", "run.checkpoint_every=2", "discriminator.ndf=4", "discriminator.n_layers=2",
             "loss.vgg_random_init_test_only=true"]
    assert main(args + [item for setting in tiny for item in ("--set", setting)]) == 0

    summary = json.loads((out / "summary.json").read_text())
    config = yaml.safe_load((out / "run" / "config.yaml").read_text())
    assert config["loss"]["mode"] == "gan" and config["discriminator"]["arch"] == "patchgan"
    assert (config["loss"]["pixel_weight"], config["loss"]["perceptual_weight"], config["loss"]["gan_weight"]) == (0.01, 1.0, 0.005)
    assert [row["iteration"] for row in summary["curve"]] == [0, 2]
    assert all(np.isfinite(row["psnr"]) for row in summary["curve"])
    assert load_model(out / "model.safetensors").nf == 8
