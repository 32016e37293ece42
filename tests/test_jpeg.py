"""JPEG quality from quantisation tables (`data.jpeg`), against files Pillow encodes at known qualities."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from realsr_fast.data import jpeg
from realsr_fast.errors import RealSRError


def _encoded(rng: np.random.Generator, quality: int, path=None) -> Image.Image:
    pixels = rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)
    target = path if path is not None else io.BytesIO()
    Image.fromarray(pixels).save(target, "JPEG", quality=quality)
    return Image.open(target)


def test_quality_of_pillow_files_at_fresh_qualities(rng):
    for quality in rng.choice(np.arange(25, 101), 8, replace=False):
        with _encoded(rng, int(quality)) as image:
            assert jpeg.quality_of_tables(image.quantization) == quality


def test_scaled_tables_match_pillows_and_the_standard_at_50(rng):
    quality = int(rng.integers(1, 101))
    with _encoded(rng, quality) as image:
        assert np.array_equal(jpeg.scaled_table(jpeg.LUMINANCE, quality).ravel(), np.array(image.quantization[0]))
        assert np.array_equal(jpeg.scaled_table(jpeg.CHROMINANCE, quality).ravel(), np.array(image.quantization[1]))
    assert np.array_equal(jpeg.scaled_table(jpeg.LUMINANCE, 50), jpeg.LUMINANCE)
    with pytest.raises(RealSRError):
        jpeg.scaled_table(jpeg.LUMINANCE, 0)


def test_quality_of_folder_is_the_median_of_its_jpegs_and_none_for_pngs(tmp_path, rng):
    qualities = sorted(int(q) for q in rng.choice(np.arange(60, 100), 3, replace=False))
    for index, quality in enumerate(qualities):
        _encoded(rng, quality, tmp_path / f"{index}.jpg").close()
    Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(tmp_path / "x.png")
    photos = sorted(tmp_path.iterdir())
    assert jpeg.jpeg_quality_of_folder(photos) == qualities[1]
    assert jpeg.jpeg_quality_of_folder([tmp_path / "x.png"]) is None
    assert jpeg.luminance_table(tmp_path / "x.png") is None
    assert jpeg.luminance_table(tmp_path / "0.jpg").shape == (8, 8)


def test_compress_equals_pillow_decoding_of_the_same_quality_roughly(rng):
    """The training step against an independent encoder: libjpeg via Pillow at the same quality."""
    pixels = rng.integers(0, 256, (2, 3, 40, 56), dtype=np.uint8)
    batch = torch.from_numpy(pixels).float() / 255
    out = jpeg.compress(batch, [90, 40])
    assert out.shape == batch.shape and out.dtype == batch.dtype
    for index, quality in enumerate((90, 40)):
        buffer = io.BytesIO()
        Image.fromarray(pixels[index].transpose(1, 2, 0)).save(buffer, "JPEG", quality=quality)
        reference = np.array(Image.open(buffer)).astype(np.float64).transpose(2, 0, 1) / 255
        mine = out[index].double().numpy()
        assert np.abs(mine - reference).mean() < 2 / 255, quality  # decoders' upsampling/IDCT differ slightly
        assert np.abs(mine - pixels[index] / 255).mean() > 1 / 255  # it did compress


def test_the_jpeg_recipe_compresses_the_noisy_lr_last_at_qualities_around_the_cameras(rng):
    from realsr_fast.data.degrader import JPEG_SPREAD, Degrader

    seed = int(rng.integers(1 << 30))
    kernels = torch.from_numpy(rng.random((3, 9, 9))).float()
    kernels /= kernels.sum(dim=(1, 2), keepdim=True)
    noise = torch.from_numpy(rng.integers(100, 156, (4, 3, 24, 24), dtype=np.uint8))
    hr = torch.from_numpy(rng.integers(0, 256, (6, 3, 64, 64), dtype=np.uint8))
    camera = float(rng.integers(60, 95))
    jpeg_degrader = Degrader(kernels, noise, 4, "kernel+noise+jpeg", torch.Generator().manual_seed(seed), jpeg_quality=camera)
    lr, choices = jpeg_degrader.forward_with_choices(hr)
    qualities = choices.jpeg_quality
    assert qualities.min() >= camera - JPEG_SPREAD and qualities.max() <= camera + JPEG_SPREAD
    plain = Degrader(kernels, noise, 4, "kernel+noise", torch.Generator().manual_seed(seed))
    plain_lr, plain_choices = plain.forward_with_choices(hr)
    assert torch.equal(plain_choices.kernel_index, choices.kernel_index)
    assert torch.equal(lr, jpeg.compress(plain_lr, qualities.tolist()))
    with pytest.raises(RealSRError):
        Degrader(kernels, noise, 4, "kernel+noise+jpeg")
