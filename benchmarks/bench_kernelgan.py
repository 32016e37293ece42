"""KernelGAN iterations: collapsed + batched generator vs the official deep-linear (literal) form.

Same images, same run; 64 iterations each (the cost per iteration is flat over a run). Each call
also pays the per-run setup (crop-probability maps, initialisation: about 7 ms per image, two
batched collapsed iterations) and draws noise 64 iterations at a time, so 64 iterations keep the
setup's share small, as in a 3000-iteration run, and charge the noise exactly.
Run: python -m pytest benchmarks/bench_kernelgan.py --benchmark-json benchmarks/results/kernelgan_cpu.json
Compare `extra_info.ms_per_image_iteration`; the ratio literal / collapsed is the speed-up.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from realsr_fast.kernel_estimation.kernelgan.crops import prepare_image
from realsr_fast.kernel_estimation.kernelgan.training import train_kernelgan

ITERATIONS = 64


def _image(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    blocks = np.kron(rng.random((26, 26, 3)), np.ones((8, 8, 1)))[:200, :200]
    return prepare_image((np.clip(blocks + 0.05 * rng.standard_normal(blocks.shape), 0, 1) * 255).astype(np.uint8))


@pytest.mark.parametrize(
    "form,batch",
    [("literal", 1), ("collapsed", 1), ("collapsed", 4), ("collapsed", 16), ("collapsed", 32),
     pytest.param("collapsed", 64, marks=pytest.mark.cuda)],  # the GPU case: images/s at batch 64
)
def test_kernelgan_iterations(benchmark, form, batch):
    images = [_image(i) for i in range(batch)]
    seeds = list(range(batch))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    benchmark.pedantic(
        train_kernelgan, args=(images, seeds, ITERATIONS, form, device), rounds=3, iterations=1, warmup_rounds=1
    )
    per_iteration = benchmark.stats.stats.median / ITERATIONS
    benchmark.extra_info.update(
        form=form, batch=batch, device=device, threads=torch.get_num_threads(),
        ms_per_iteration=1e3 * per_iteration, ms_per_image_iteration=1e3 * per_iteration / batch,
        seconds_per_image_3000_iterations=3000 * per_iteration / batch,
        images_per_second_3000_iterations=batch / (3000 * per_iteration),
    )
