"""Kernel-estimate accuracy on synthetic truth (the yardstick of `realsr_fast.kernel_estimation.evaluation.yardstick`).

Photos blurred with DIV2KRK-style kernels, estimated by KernelGAN at the official 3000 iterations in
one batch (official mode `none`) and by the spectral estimator (`spectral`),
scored against bicubic, the best constant isotropic kernel (width chosen with the truth) and the
truth. Slow (minutes per KernelGAN mode): opt-in with `-m heavy`.

Run: python -m pytest benchmarks/bench_kernel_accuracy.py -m heavy -s \
         --benchmark-json benchmarks/results/kernel_accuracy_cpu.json
or, for the tables only: python benchmarks/bench_kernel_accuracy.py --help (images, seeds, modes, and
the held-out photos that check a method was not tuned to the benchmark set).
`extra_info` holds the per-image PSNRs and kernel errors and the seconds per image.
"""
from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pytest
import torch

from realsr_fast.kernel_estimation.estimate import estimate_kernels
from realsr_fast.kernel_estimation.estimators import KernelSettings
from realsr_fast.kernel_estimation.evaluation import yardstick

IMAGES = 8
SEEDS = 1


MODES = {"none": KernelSettings(device="cpu"), "spectral": KernelSettings(method="spectral", device="cpu")}
"""Benchmark modes: KernelGAN official, the spectral estimator."""


def run_mode(mode: str, cases: list[yardstick.Case], runs: int = SEEDS,
             inputs: list[np.ndarray] | None = None) -> tuple[list[yardstick.Row], float, float, list]:
    """Estimate every case in one batch: (rows against the best constant, wall seconds, CPU seconds, estimates).

    `inputs`: what the estimator sees instead of each case's LR (e.g. with noise); scores stay
    against the clean LR. CPU seconds (this process, all threads) stand in for wall time on a shared machine.
    """
    start, start_cpu = time.perf_counter(), time.process_time()
    settings = MODES[mode]
    settings = replace(settings, runs=runs if settings.estimator.batched else 1)  # spectral checks itself on two halves
    images = inputs if inputs is not None else [c.lr for c in cases]
    estimates = estimate_kernels(images, [c.name for c in cases], settings)
    seconds, cpu = time.perf_counter() - start, time.process_time() - start_cpu
    return yardstick.score(cases, [e.kernel_x2 for e in estimates]), seconds, cpu, estimates


@pytest.mark.heavy
@pytest.mark.parametrize("mode", list(MODES))
def test_kernel_accuracy(benchmark, mode):
    cases = yardstick.make_cases(IMAGES)
    rows, seconds, cpu, _ = benchmark.pedantic(run_mode, args=(mode, cases), rounds=1, iterations=1)
    sigma = yardstick.best_constant_sigma(cases)
    print(f"\nmode {mode}, {IMAGES} images, batch {IMAGES}: {seconds / IMAGES:.1f} s/image "
          f"({cpu / IMAGES:.1f} CPU s/image)\n" + yardstick.table(rows, sigma))
    benchmark.extra_info.update(
        mode=mode, images=IMAGES, seconds_per_image=seconds / IMAGES, cpu_seconds_per_image=cpu / IMAGES,
        constant_sigma=sigma,
        rows=[{"name": r.name, "psnr": r.psnr, "error": r.error} for r in rows],
        mean_gain_over_constant_db=float(np.mean([r.psnr["estimate"] - r.psnr["constant"] for r in rows])),
        beats_constant=yardstick.beats_constant(rows),
    )


def degraded_inputs(cases: list[yardstick.Case], noise: float, jpeg: int | None, seed: int = 5) -> list[np.ndarray]:
    """Each case's LR with white Gaussian noise of `noise` grey levels, then JPEG at quality `jpeg` if given."""
    import io

    from PIL import Image

    rng = np.random.default_rng(seed)
    out = []
    for case in cases:
        lr = np.clip(np.round(case.lr + rng.normal(0, noise, case.lr.shape)), 0, 255).astype(np.uint8) if noise else case.lr
        if jpeg is not None:
            buffer = io.BytesIO()
            Image.fromarray(lr).save(buffer, "JPEG", quality=jpeg)
            lr = np.array(Image.open(buffer))
        out.append(lr)
    return out


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Kernel-estimate accuracy tables on synthetic truth.")
    parser.add_argument("--images", type=int, default=IMAGES, help="cases (photos cycled, fresh kernels)")
    parser.add_argument("--seeds", type=int, default=SEEDS, help="KernelGAN runs per image")
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated of {', '.join(MODES)}")
    parser.add_argument("--photos", choices=("benchmark", "held-out"), default="benchmark",
                        help="the benchmark photos (yardstick.PHOTO_NAMES) or the held-out ones")
    parser.add_argument("--kernel-seed", type=int, default=2020, help="seed of the true kernels")
    parser.add_argument("--lr-noise", type=float, default=0.0, metavar="GREY_LEVELS",
                        help="white Gaussian noise added to what the estimator sees (scores use the clean LR)")
    parser.add_argument("--jpeg", type=int, default=None, metavar="QUALITY",
                        help="JPEG-compress what the estimator sees (after the noise)")
    args = parser.parse_args()
    names = yardstick.PHOTO_NAMES if args.photos == "benchmark" else yardstick.HELD_OUT_PHOTO_NAMES
    cases = yardstick.make_cases(args.images, args.kernel_seed, names=names)
    sigma = yardstick.best_constant_sigma(cases)
    inputs = degraded_inputs(cases, args.lr_noise, args.jpeg) if args.lr_noise or args.jpeg is not None else None
    for mode in args.modes.split(","):
        rows, seconds, cpu, estimates = run_mode(mode, cases, args.seeds, inputs)
        print(f"\n## mode {mode}: {args.images} {args.photos} images (kernel seed {args.kernel_seed}; "
              f"LR noise {args.lr_noise} grey levels, JPEG {args.jpeg}) x "
              f"{args.seeds if mode != 'spectral' else 1} seeds in one batch, {seconds / args.images:.1f} s/image, "
              f"{cpu / args.images:.1f} CPU s/image, {torch.get_num_threads()} threads\n")
        print(yardstick.table(yardstick.score(cases, [e.kernel_x2 for e in estimates], sigma), sigma))
        for row, estimate in zip(rows, estimates):
            if estimate.trust is not None:
                print(f"{row.name}: {estimate.trust.reason}, "
                      f"gain over constant {row.psnr['estimate'] - row.psnr['constant']:+.2f} dB")


if __name__ == "__main__":
    main()
