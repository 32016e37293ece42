"""Batched KernelGAN training: image i of a batch == the same image alone; seeds; the folder job."""
from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from realsr_fast.cli import main
from realsr_fast.kernel_estimation.kernelgan.crops import prepare_image
from realsr_fast.kernel_estimation.kernelgan.training import train_kernelgan


def _photo(seed: int, height: int, width: int) -> np.ndarray:
    """A textured test image: smooth random blobs plus edges."""
    rng = np.random.default_rng(seed)
    small = rng.random((height // 8 + 2, width // 8 + 2, 3))
    big = np.kron(small, np.ones((8, 8, 1)))[:height, :width]
    return (np.clip(big + 0.1 * rng.standard_normal(big.shape), 0, 1) * 255).astype(np.uint8)


IMAGES = [_photo(0, 120, 100), _photo(1, 96, 140), _photo(2, 110, 110)]


def test_batched_run_equals_single_image_runs():
    # float64 and 5 iterations: the CPU's batched GEMMs round differently for different batch
    # sizes, and Adam turns every gradient element whose sign rounding can flip into a full
    # learning-rate step, so rounding differences grow ~1000x per iteration (float32: O(1) by
    # iteration 10, float64: by iteration 8). Mixing between images would show at iteration 1.
    prepared = [prepare_image(im) for im in IMAGES]
    seeds = [11, 22, 33]
    batched = train_kernelgan(prepared, seeds, iterations=5, dtype=torch.float64)
    for i in (0, 2):
        alone = train_kernelgan([prepared[i]], [seeds[i]], iterations=5, dtype=torch.float64)
        scale = alone.kernels.abs().max()
        torch.testing.assert_close(batched.kernels[i], alone.kernels[0], rtol=1e-5, atol=1e-5 * scale)
    assert not torch.allclose(batched.kernels[0], batched.kernels[1])


def test_same_seed_same_kernel_and_other_seed_other_kernel():
    prepared = [prepare_image(IMAGES[0])]
    a = train_kernelgan(prepared, [5], iterations=15).kernels
    b = train_kernelgan(prepared, [5], iterations=15).kernels
    c = train_kernelgan(prepared, [6], iterations=15).kernels
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_bicubic_weight_option_is_the_starting_weight_of_the_bicubic_loss(monkeypatch):
    """--bicubic-weight 20 (Real-SR's copy of KernelGAN) starts the bicubic loss at 20, not 5."""
    from realsr_fast.kernel_estimation.kernelgan import training

    started = []
    original = training.ConstraintSchedule.start

    def spy(n, device, bicubic_weight=5.0):
        schedule = original(n, device, bicubic_weight)
        started.append(schedule.lambda_bicubic.clone())
        return schedule

    monkeypatch.setattr(training.ConstraintSchedule, "start", staticmethod(spy))
    prepared = [prepare_image(IMAGES[0])]
    upstream = train_kernelgan(prepared, [5], iterations=5).kernels
    realsr = train_kernelgan(prepared, [5], iterations=5, bicubic_weight=20.0).kernels
    assert [float(w[0]) for w in started] == [5.0, 20.0]
    assert not torch.equal(upstream, realsr)  # the weight reaches G's loss (Adam keeps the steps close)


def test_literal_and_collapsed_training_stay_together_for_a_few_iterations():
    prepared = [prepare_image(IMAGES[1])]
    fast = train_kernelgan(prepared, [3], iterations=5, form="collapsed", dtype=torch.float64).kernels
    literal = train_kernelgan(prepared, [3], iterations=5, form="literal", dtype=torch.float64).kernels
    torch.testing.assert_close(fast, literal, rtol=1e-5, atol=1e-5 * literal.abs().max())


def test_kernels_command_writes_resumes_and_reports_failures(tmp_path, capsys):
    src, out = tmp_path / "photos", tmp_path / "out"
    src.mkdir()
    for name, image in zip(("a", "b"), IMAGES[:2]):
        Image.fromarray(image).save(src / f"{name}.png")
    Image.fromarray(np.zeros((50, 300, 3), np.uint8)).save(src / "tiny.png")
    (src / "broken.jpg").write_bytes(b"not a jpeg")

    args = ["kernels", str(src), "-o", str(out), "--kernel-iters", "3", "--scale", "4", "--batch", "2", "--quiet"]
    assert main(args) == 1  # two bad inputs
    err = capsys.readouterr().err
    assert "84x84" in err and "broken" in err
    for stem in ("a", "b"):
        k2 = scipy.io.loadmat(out / stem / f"{stem}_kernel_x2.mat")["Kernel"]
        k4 = scipy.io.loadmat(out / stem / f"{stem}_kernel_x4.mat")["Kernel"]
        assert k2.shape == (17, 17) and k4.shape == (33, 33)
        np.testing.assert_allclose(np.load(out / stem / f"{stem}_kernel_x2.npy"), k2)
    report = json.loads((out / "report.json").read_text())
    assert set(report) == {"a", "b"} and "flags" in report["a"]
    assert Image.open(out / "kernels.png").size[0] > 0

    before = (out / "a" / "a_kernel_x2.npy").stat().st_mtime_ns
    assert main(args) == 1
    assert "2 skipped (outputs exist" in capsys.readouterr().err
    assert (out / "a" / "a_kernel_x2.npy").stat().st_mtime_ns == before
    (src / "tiny.png").unlink()
    (src / "broken.jpg").unlink()
    assert main(args) == 0


def test_ranks_take_disjoint_shares(tmp_path, monkeypatch):
    from realsr_fast.kernel_estimation.estimate import _rank_share

    files = [tmp_path / f"{i}.png" for i in range(7)]
    shares = []
    for rank in range(3):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "3")
        shares.append(_rank_share(files))
    assert sorted(sum(shares, [])) == sorted(files) and all(shares)


def test_empty_input_folder_and_output_inside_it_are_refused(tmp_path, capsys):
    (tmp_path / "photos").mkdir()
    assert main(["kernels", str(tmp_path / "photos"), "-o", str(tmp_path / "out"), "--quiet"]) == 1
    assert "no photos found" in capsys.readouterr().err
    assert main(["kernels", str(tmp_path / "photos"), "-o", str(tmp_path / "photos"), "--quiet"]) == 1
    assert "is a source folder" in capsys.readouterr().err


def test_kernels_seeds_keep_the_medoid_run_and_overwrite_redoes(tmp_path, capsys):
    from realsr_fast.kernel_estimation.kernelgan.estimate import image_seed
    from realsr_fast.kernel_estimation.postprocess import post_process

    src, out = tmp_path / "photos", tmp_path / "out"
    src.mkdir()
    Image.fromarray(IMAGES[2]).save(src / "a.png")
    args = ["kernels", str(src), "-o", str(out), "--kernel-iters", "3", "--seeds", "3", "--seed", "4", "--quiet"]
    assert main(args) == 0
    saved = np.load(out / "a" / "a_kernel_x2.npy")
    report = json.loads((out / "a" / "a_report.json").read_text())

    # the three runs one at a time and their medoid by hand (after 3 iterations the batched
    # run differs from single runs by float32 rounding only, far below the tolerance)
    prepared = prepare_image(IMAGES[2])
    runs = [post_process(train_kernelgan([prepared], [image_seed(4, "a", r)], iterations=3).kernels[0].numpy()).kernel
            for r in range(3)]
    distance = np.array([[np.abs(a - b).sum() for b in runs] for a in runs])
    assert distance[0, 1] > 0 and distance[1, 2] > 0  # the seeds really differ
    np.testing.assert_allclose(saved, runs[int(distance.sum(1).argmin())], atol=1e-5)
    assert report["runs"] == 3
    assert report["run_spread_l1"] == pytest.approx(distance.sum() / 6, rel=1e-3)

    np.save(out / "a" / "a_kernel_x2.npy", np.zeros((17, 17)))  # a result to be redone
    assert main(args) == 0
    assert "1 skipped (outputs exist" in capsys.readouterr().err
    assert not np.load(out / "a" / "a_kernel_x2.npy").any()
    assert main([*args, "--overwrite"]) == 0
    np.testing.assert_allclose(np.load(out / "a" / "a_kernel_x2.npy"), saved, atol=1e-7)
