"""Presets, dotted overrides and their checks; the resumable crop stream and the synthetic banks."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from realsr_fast.errors import RealSRError
from realsr_fast.train.batches import StreamSampler, synthetic_kernel_bank, synthetic_noise_bank
from realsr_fast.train.config import PRESET_DIR, load_config

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def test_presets_ship_in_the_package_and_load_by_name_from_any_folder(tmp_path, monkeypatch):
    """`realsr adapt` and the demo read presets from an installed wheel (no source checkout), so the
    presets live in the package and its package-data pattern must cover every one of them."""
    import tomllib

    pyproject = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["realsr_fast"]
    package = PRESET_DIR.parent
    shipped = {p for pattern in patterns for p in package.glob(pattern)}
    presets = sorted(PRESET_DIR.glob("*.yaml"))
    assert {"adapt", "adapt_gan", "smoke"} <= {p.stem for p in presets}
    assert set(presets) <= shipped
    monkeypatch.chdir(tmp_path)  # no configs/ here
    for name in ("smoke", "smoke.yaml", "configs/smoke.yaml"):
        assert load_config(name).optim.iterations == load_config(PRESET_DIR / "smoke.yaml").optim.iterations
    with pytest.raises(RealSRError, match="packaged presets are .*smoke"):
        load_config("no_such_preset")
    with pytest.raises(RealSRError, match="does not exist"):
        load_config(tmp_path / "elsewhere" / "smoke.yaml")  # a real path is never swapped for a preset


@pytest.mark.parametrize("preset, recipe, arch", [("realsr_dped", "kernel+noise", "patchgan"),
                                                  ("realsr_df2k", "bicubic+noise", "vgg128")])
def test_presets_hold_the_paper_settings(preset, recipe, arch):
    config = load_config(CONFIGS / f"{preset}.yaml", ["data.hr=HR"])
    g, o, loss = config.generator, config.optim, config.loss
    assert (g.nf, g.nb, g.gc, g.scale, g.init) == (64, 23, 32, 4, "esrgan-psnr")  # RealSR starts from RRDB_PSNR_x4
    assert (loss.mode, loss.pixel_weight, loss.perceptual_weight, loss.gan_weight) == ("gan", 0.01, 1.0, 0.005)
    assert (o.lr_g, o.lr_d, o.betas, o.milestones, o.gamma, o.iterations) == (
        1e-4, 1e-4, [0.9, 0.999], [5000, 10000, 20000, 30000], 0.5, 60000)
    assert (config.data.batch, config.data.patch, config.run.seed) == (16, 128, 10)
    assert (config.data.recipe, config.discriminator.arch) == (recipe, arch)
    assert (config.discriminator.ndf, config.discriminator.n_layers) == (64, 3)
    assert not loss.vgg_random_init_test_only
    assert (config.data.kernel_draw, config.run.precision) == ("per_image", "fp32")


def test_defaults_are_the_official_recipe():
    config = load_config(None, ["data.hr=HR"])
    official = ("esrgan-psnr", "per_image", "fp32")
    assert (config.generator.init, config.data.kernel_draw, config.run.precision) == official


def test_dped_preset_cites_the_official_option_file():
    header = (CONFIGS / "realsr_dped.yaml").read_text(encoding="utf-8")
    assert "codes/options/dped/train_kernel_noise.yml" in header and "train_dped.yml" not in header


def test_track1_clean_targets_join_the_hr_as_given(tmp_path):
    from realsr_fast.io import write_image
    from realsr_fast.train.batches import crop_dataset

    for folder, count in (("cleaned", 2), ("targets", 3)):
        for i in range(count):
            write_image(tmp_path / folder / f"{folder}{i}.png", torch.zeros(40, 44, 3, dtype=torch.uint8).numpy())
    config = load_config(CONFIGS / "realsr_df2k.yaml", [f"data.hr={tmp_path / 'cleaned'}",
                                                        f"data.hr_as_given={tmp_path / 'targets'}", "data.patch=32"])
    assert crop_dataset(config.data, 4, 16).count == 5
    with pytest.raises(RealSRError, match="data.hr_as_given adds HR images to data.hr"):
        load_config(None, ["data.hr_as_given=targets"])


def test_adapting_the_released_model_is_its_own_preset():
    config = load_config(CONFIGS / "finetune_df2k.yaml", ["data.hr=HR"])
    assert config.generator.init == "df2k" and (config.generator.nb, config.data.kernel_draw) == (23, "per_image")


def test_smoke_preset_is_tiny_and_marked_test_only():
    config = load_config(CONFIGS / "smoke.yaml")
    assert config.loss.vgg_random_init_test_only and config.run.device == "cpu"
    assert config.generator.nb <= 2 and config.generator.init is None and config.optim.iterations <= 100


def test_overrides_parse_yaml_values():
    config = load_config(CONFIGS / "smoke.yaml", ["optim.milestones=[3, 6]", "generator.init=null", "optim.lr_g=2e-4",
                                                 "data.hr=some/folder", "run.compile=true"])
    assert config.optim.milestones == [3, 6] and config.optim.lr_g == 2e-4
    assert config.data.hr == "some/folder" and config.run.compile is True


@pytest.mark.parametrize("override, message", [
    ("data.hrr=x", "unknown config key data.hrr; did you mean data.hr"),
    ("trainer.x=1", "unknown config key trainer"),
    ("optim.iterations=1.5", "optim.iterations must be a whole number"),
    ("run.progress=maybe", "run.progress must be true or false"),
    ("loss.mode=wgan", "loss.mode must be one of gan, psnr"),
    ("data.patch=30", "multiple of generator.scale"),
    ("optim.lr_g=0", "optim.lr_g must be more than 0"),
    ("optim.milestones=[5, 2]", "increasing"),
    ("data.kernel_draw=per_batch", "data.kernel_draw must be one of per_image, per_sample"),
    ("noequals", "section.key=value"),
])
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(RealSRError, match=message.replace("[", r"\[")):
        load_config(CONFIGS / "smoke.yaml", [override])


def test_missing_hr_and_missing_file_are_explained(tmp_path):
    with pytest.raises(RealSRError, match="data.hr is not set"):
        load_config(CONFIGS / "realsr_dped.yaml")
    with pytest.raises(RealSRError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")


def _take(sampler, count):
    iterator = iter(sampler)
    return [next(iterator) for _ in range(count)]


def test_stream_resumes_and_shards_without_state():
    full = _take(StreamSampler(5, seed=3), 23)
    assert _take(StreamSampler(5, seed=3, start=9), 14) == full[9:]
    for epoch in range(4):  # every epoch is a permutation of the dataset
        assert sorted(index for index, _ in full[5 * epoch:5 * epoch + 5]) == list(range(5))
    assert len({seed for _, seed in full}) == len(full)
    rank0, rank1 = _take(StreamSampler(5, 3, 0, 2), 10), _take(StreamSampler(5, 3, 1, 2), 10)
    interleaved = [item for pair in zip(rank0, rank1) for item in pair]
    assert interleaved == _take(StreamSampler(5, seed=3), 20)
    assert _take(StreamSampler(5, 3, 1, 2, start=4), 6) == rank1[4:]
    assert _take(StreamSampler(5, seed=4), 5) != full[:5]


def test_synthetic_banks_are_seeded_and_valid():
    kernels = synthetic_kernel_bank(4)
    assert kernels.shape == (8, 33, 33) and torch.allclose(kernels.sum((1, 2)), torch.ones(8), atol=1e-6)
    assert torch.equal(kernels, synthetic_kernel_bank(4))
    noise = synthetic_noise_bank()
    assert noise.dtype == torch.uint8 and noise.shape == (16, 3, 64, 64)
    stds = noise.float().std(dim=(1, 2, 3))
    assert 0.5 < stds[0] < 1.6 and 7 < stds[-1] < 9
