"""Kernel banks from kernel folders, and the offline paired dataset (`realsr dataset`)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import scipy.ndimage
import torch

from realsr_fast.cli import main
from realsr_fast.data.imresize import imresize
from realsr_fast.data.kernel_bank import load_kernel_bank, stack_kernels
from realsr_fast.data.paired import build_paired_dataset
from realsr_fast.data.paired_settings import PairedSettings
from realsr_fast.errors import RealSRError
from realsr_fast.io import read_image, write_image


def random_kernel(rng, size: int) -> np.ndarray:
    """An anisotropic Gaussian with multiplicative noise (DIV2KRK-like), not normalised."""
    y, x = np.mgrid[:size, :size] - (size - 1) / 2
    angle, s1, s2 = rng.uniform(0, np.pi), rng.uniform(0.8, 4), rng.uniform(0.8, 4)
    u, v = x * np.cos(angle) + y * np.sin(angle), -x * np.sin(angle) + y * np.cos(angle)
    return np.exp(-0.5 * ((u / s1) ** 2 + (v / s2) ** 2)) * rng.uniform(0.75, 1.25, (size, size)) * 3


def save_mat(path: Path, kernel: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(path, {"Kernel": kernel})


@pytest.fixture
def kernelgan_folder(tmp_path, rng) -> Path:
    """The original KernelGAN's output: KDIR/<img>/<img>_kernel_x2.mat and _kernel_x4.mat."""
    folder = tmp_path / "kernelgan"
    for name in ("im1", "im2", "im3", "im4", "im5"):
        save_mat(folder / name / f"{name}_kernel_x2.mat", random_kernel(rng, 17))
        save_mat(folder / name / f"{name}_kernel_x4.mat", random_kernel(rng, 33))
    return folder


def test_kernelgan_layout_is_read_and_normalised(kernelgan_folder):
    bank = load_kernel_bank(kernelgan_folder, 4)
    assert [p.name for p in bank.files] == [f"im{i}_kernel_x4.mat" for i in range(1, 6)]
    assert bank.kernels.shape == (5, 33, 33) and bank.kernels.dtype == torch.float32
    raw = scipy.io.loadmat(bank.files[2])["Kernel"]
    np.testing.assert_allclose(bank.kernels[2].numpy(), raw / raw.sum(), rtol=1e-6)
    assert load_kernel_bank(kernelgan_folder, 2).kernels.shape == (5, 17, 17)


def test_realsr_layout_reads_one_file_per_kernel_and_flat_files(tmp_path, rng):
    folder = tmp_path / "kernels"
    kernel = random_kernel(rng, 33)
    save_mat(folder / "a" / "a_kernel_x4.mat", kernel)
    np.save(folder / "a" / "a_kernel_x4.npy", kernel)  # realsr kernels writes both
    np.save(folder / "b_kernel_x4.npy", random_kernel(rng, 33))
    (folder / "notes.npy").write_bytes(b"")  # not a kernel name: ignored
    bank = load_kernel_bank(folder, 4)
    assert [p.name for p in bank.files] == ["a_kernel_x4.npy", "b_kernel_x4.npy"]


@pytest.mark.parametrize("size", [17, 16, 9])
def test_smaller_kernels_are_padded_around_the_centre_index(rng, size):
    big, small = random_kernel(rng, 33), random_kernel(rng, size)
    bank = stack_kernels([big, small], scale=4)
    start = 33 // 2 - size // 2
    np.testing.assert_allclose(bank[1, start:start + size, start:start + size].numpy(), small / small.sum(), rtol=1e-6)
    assert bank[1].sum().item() == pytest.approx(1, abs=1e-6)
    # The blur does not move: correlating with the padded kernel equals correlating with the
    # original (scipy centres a kernel at index k // 2, as the degrade op does).
    image = rng.random((40, 40))
    np.testing.assert_allclose(
        scipy.ndimage.correlate(image, bank[1].double().numpy(), mode="reflect"),
        scipy.ndimage.correlate(image, small / small.sum(), mode="reflect"), atol=1e-6)


@pytest.mark.parametrize("size", [35, 41, 65])
def test_odd_kernels_larger_than_kernelgans_are_centre_cropped(tmp_path, rng, size):
    """Upstream KernelGAN writes x4 kernels above 33x33 for off-centre raw kernels: one such file
    must not make the folder fail; it is cropped around its centre and renormalised, with a warning."""
    big = random_kernel(rng, size)
    np.save(tmp_path / "a_kernel_x4.npy", big)
    np.save(tmp_path / "b_kernel_x4.npy", random_kernel(rng, 33))
    with pytest.warns(UserWarning, match=rf"a_kernel_x4.npy: {size}x{size} kernel cropped to 33x33 .*% of its mass"):
        bank = load_kernel_bank(tmp_path, 4)
    start = size // 2 - 16
    want = big[start:start + 33, start:start + 33]
    assert bank.kernels.shape == (2, 33, 33)
    np.testing.assert_allclose(bank.kernels[0].numpy(), want / want.sum(), rtol=1e-5, atol=1e-8)


def test_kernel_folder_errors(tmp_path, rng, kernelgan_folder):
    with pytest.raises(RealSRError, match="holds x2, x4 kernels only"):
        load_kernel_bank(kernelgan_folder, 3)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(RealSRError, match=r"no x4 kernels \(\*/\*_kernel_x4.mat or .npy\)"):
        load_kernel_bank(empty, 4)
    with pytest.raises(RealSRError, match="no such kernel folder"):
        load_kernel_bank(tmp_path / "missing", 4)
    np.save(empty / "big_kernel_x4.npy", random_kernel(rng, 64))
    with pytest.raises(RealSRError, match=r"64x64 kernel is too large for x4 \(expected at most 33x33"):
        load_kernel_bank(empty, 4)
    np.save(empty / "big_kernel_x4.npy", np.zeros((33, 33)))
    with pytest.raises(RealSRError, match="sums to 0"):
        load_kernel_bank(empty, 4)
    scipy.io.savemat(empty / "big_kernel_x4.mat", {"K": np.ones((3, 3))})
    (empty / "big_kernel_x4.npy").unlink()
    with pytest.raises(RealSRError, match="no 'Kernel' entry"):
        load_kernel_bank(empty, 4)


def kernel_reference_lr(hr: np.ndarray, kernel: np.ndarray, scale: int) -> np.ndarray:
    """docs/METHOD.md §3 from scipy: per-channel correlation with 'reflect' (half-sample
    symmetric) boundary, every scale-th pixel from 0, clamped, on the 0..255 scale (not rounded)."""
    x = hr.astype(np.float64) / 255
    blurred = np.stack([scipy.ndimage.correlate(x[..., c], kernel, mode="reflect") for c in range(3)], axis=-1)
    return np.clip(blurred[::scale, ::scale], 0, 1) * 255


def assert_rounds_to(got: np.ndarray, want_255: np.ndarray) -> None:
    """`got` (uint8) is `want_255` rounded, except where `want_255` lies within 1e-3 of a tie."""
    away = np.abs(want_255 - np.floor(want_255) - 0.5) > 1e-3
    np.testing.assert_array_equal(got[away], np.round(want_255[away]))
    assert away.mean() > 0.99


@pytest.fixture
def hr_folder(tmp_path, rng) -> Path:
    folder = tmp_path / "hr"
    for i, (h, w) in enumerate([(64, 80), (72, 64), (66, 70), (48, 48), (56, 64), (64, 60)]):
        write_image(folder / f"img{i}.png", rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    return folder


@pytest.fixture
def noise_folder(tmp_path, rng) -> Path:
    folder = tmp_path / "noise"
    for i in range(3):
        write_image(folder / f"n{i}.png", rng.integers(100, 140, (32, 32, 3), dtype=np.uint8))
    return folder


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_kernel_recipe_matches_scipy_reference_and_manifest(hr_folder, kernelgan_folder, noise_folder, tmp_path):
    sources = [digest(f) for f in (hr_folder, kernelgan_folder, noise_folder)]
    out = tmp_path / "pairs"
    report = build_paired_dataset(hr_folder, out, PairedSettings(kernels=kernelgan_folder, noise=noise_folder, seed=3), progress=False)
    assert report.ok and len(report.done) == 6 and report.noise_patches == 3
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["recipe"] == "kernel" and manifest["scale"] == 4 and manifest["seed"] == 3
    assert len({pair["kernel_index"] for pair in manifest["pairs"]}) > 1
    for pair in manifest["pairs"]:
        hr, lr = read_image(out / pair["hr"]), read_image(out / pair["lr"])
        source = read_image(pair["source"])
        h, w = source.shape[0] // 4 * 4, source.shape[1] // 4 * 4
        np.testing.assert_array_equal(hr, source[:h, :w])  # cropped to a multiple of the scale
        kernel = scipy.io.loadmat(pair["kernel_file"])["Kernel"]
        assert Path(pair["kernel_file"]).name == f"im{pair['kernel_index'] + 1}_kernel_x4.mat"
        assert lr.shape == (h // 4, w // 4, 3)
        assert_rounds_to(lr, kernel_reference_lr(hr, kernel / kernel.sum(), 4))
    assert sorted(p.name for p in (out / "noise").iterdir()) == ["n0.png", "n1.png", "n2.png"]
    assert (out / "noise" / "n1.png").read_bytes() == (noise_folder / "n1.png").read_bytes()
    assert [digest(f) for f in (hr_folder, kernelgan_folder, noise_folder)] == sources


def test_choices_are_seeded_and_runs_resume(hr_folder, kernelgan_folder, tmp_path):
    def kernels_used(out: Path, seed: int, **kwargs) -> list[int]:
        build_paired_dataset(hr_folder, out, PairedSettings(kernels=kernelgan_folder, seed=seed), progress=False, **kwargs)
        return [pair["kernel_index"] for pair in json.loads((out / "manifest.json").read_text())["pairs"]]

    first = kernels_used(tmp_path / "a", 0)
    assert kernels_used(tmp_path / "b", 0) == first
    assert kernels_used(tmp_path / "c", 1) != first
    lr_before = digest(tmp_path / "a" / "LR")
    report = build_paired_dataset(hr_folder, tmp_path / "a", PairedSettings(kernels=kernelgan_folder), progress=False)
    assert len(report.skipped) == 6 and not report.done
    assert kernels_used(tmp_path / "a", 0, overwrite=True) == first
    assert digest(tmp_path / "a" / "LR") == lr_before


def test_bicubic_recipe_is_matlab_imresize(hr_folder, tmp_path):
    out = tmp_path / "pairs"
    report = build_paired_dataset(hr_folder, out, PairedSettings(recipe="bicubic"), progress=False)
    assert report.ok and any("no noise folder" in note for note in report.notes)
    hr = read_image(out / "HR" / "img2.png")
    want = imresize(torch.from_numpy(hr.copy()).permute(2, 0, 1).double() / 255, 0.25).clamp(0, 1) * 255
    assert_rounds_to(read_image(out / "LR" / "img2.png"), want.permute(1, 2, 0).numpy())


def test_bad_inputs(hr_folder, kernelgan_folder, tmp_path):
    (hr_folder / "broken.png").write_bytes(b"nope")
    report = build_paired_dataset(hr_folder, tmp_path / "out", PairedSettings(recipe="bicubic"), progress=False)
    assert len(report.done) == 6 and "broken.png" in report.failed[0][1]
    with pytest.raises(RealSRError, match="needs a kernel folder"):
        build_paired_dataset(hr_folder, tmp_path / "out")
    with pytest.raises(RealSRError, match="unknown offline recipe"):
        build_paired_dataset(hr_folder, tmp_path / "out", PairedSettings(recipe="kernel+noise"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(RealSRError, match="no noise patches"):
        build_paired_dataset(hr_folder, tmp_path / "out", PairedSettings(recipe="bicubic", noise=empty))
    with pytest.raises(RealSRError, match="no x4 kernels"):
        build_paired_dataset(hr_folder, tmp_path / "out", PairedSettings(kernels=empty))
    with pytest.raises(RealSRError, match="no HR images found"):
        build_paired_dataset(empty, tmp_path / "out", PairedSettings(recipe="bicubic"))
    with pytest.raises(RealSRError, match="is a source folder"):
        build_paired_dataset(hr_folder, kernelgan_folder, PairedSettings(kernels=kernelgan_folder))


def test_cli(hr_folder, kernelgan_folder, noise_folder, tmp_path, capsys):
    from realsr_fast.commands.dataset import OFFLINE_RECIPES as RECIPES
    from realsr_fast.data.paired import OFFLINE_RECIPES

    assert RECIPES == OFFLINE_RECIPES
    out = str(tmp_path / "pairs")
    args = ["dataset", "--hr", str(hr_folder), "--kernels", str(kernelgan_folder), "--noise", str(noise_folder), "-o", out]
    assert main(args + ["--seed", "5"]) == 0
    assert "6 images paired, 3 noise patches" in capsys.readouterr().out
    assert main(["dataset", "--hr", str(hr_folder), "-o", out]) == 1
    assert "needs a kernel folder (--kernels)" in capsys.readouterr().err
    (hr_folder / "broken.png").write_bytes(b"nope")
    assert main(args) == 1


def test_output_whose_hr_subfolder_is_the_source_is_refused(tmp_path, rng):
    source = tmp_path / "data" / "HR"
    write_image(source / "a.png", rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8))
    before = digest(source)
    with pytest.raises(RealSRError, match="is a source folder"):
        build_paired_dataset(source, tmp_path / "data", PairedSettings(recipe="bicubic"), progress=False)
    assert digest(source) == before
