"""`realsr adapt` end to end on the CPU with a tiny generator: the files, the held-out split, the
resume (no stage redone, training continues), and a held-out score that rises on a learnable case."""
from __future__ import annotations

import json

import numpy as np
import pytest

from realsr_fast.adaptation.split import split_names
from realsr_fast.cli import main
from realsr_fast.errors import RealSRError
from realsr_fast.io import write_image
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
    train, held_out = summary["photos"]["train"], summary["photos"]["held_out"]
    assert sorted(train + held_out) == [f"photo{i}" for i in range(5)] and len(held_out) == 2
    assert not set(train) & set(held_out)
    assert sorted(p.stem for p in (out / "split" / "val").iterdir()) == held_out
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
