"""Kernel-estimate accuracy on synthetic truth (the yardstick of `realsr_fast.kernelgan.yardstick`).

Photos blurred with DIV2KRK-style kernels, estimated at the official 3000 iterations in one batch,
scored against bicubic, the best constant isotropic kernel (width chosen with the truth) and the
truth, for the official mode and the flow prior. Slow (minutes per mode): opt-in with `-m heavy`.

Run: python -m pytest benchmarks/bench_kernel_accuracy.py -m heavy -s \
         --benchmark-json benchmarks/results/kernel_accuracy_cpu.json
or, for the tables only: python benchmarks/bench_kernel_accuracy.py [IMAGES] [SEEDS]
`extra_info` holds the per-image PSNRs and kernel errors and the seconds per image.
"""
from __future__ import annotations

import sys
import time

import numpy as np
import pytest
import torch

from realsr_fast.kernelgan import yardstick
from realsr_fast.kernelgan.estimate import estimate_kernels

IMAGES = 8
SEEDS = 1


def run_mode(prior: str, cases: list[yardstick.Case],
             runs: int = SEEDS) -> tuple[list[yardstick.Row], float, float, list]:
    """Estimate every case in one batch: (rows against the best constant, wall seconds, CPU seconds, estimates).

    CPU seconds (this process, all threads) stand in for wall time on a shared machine.
    """
    start, start_cpu = time.perf_counter(), time.process_time()
    estimates = estimate_kernels([c.lr for c in cases], [c.name for c in cases], runs=runs, prior=prior)
    seconds, cpu = time.perf_counter() - start, time.process_time() - start_cpu
    return yardstick.score(cases, [e.kernel_x2 for e in estimates]), seconds, cpu, estimates


@pytest.mark.heavy
@pytest.mark.parametrize("prior", ["none", "fkp"])
def test_kernel_accuracy(benchmark, prior):
    cases = yardstick.make_cases(IMAGES)
    rows, seconds, cpu, _ = benchmark.pedantic(run_mode, args=(prior, cases), rounds=1, iterations=1)
    sigma = yardstick.best_constant_sigma(cases)
    print(f"\nprior {prior}, {IMAGES} images, batch {IMAGES}: {seconds / IMAGES:.1f} s/image "
          f"({cpu / IMAGES:.1f} CPU s/image)\n" + yardstick.table(rows, sigma))
    benchmark.extra_info.update(
        prior=prior, images=IMAGES, seconds_per_image=seconds / IMAGES, cpu_seconds_per_image=cpu / IMAGES,
        constant_sigma=sigma,
        rows=[{"name": r.name, "psnr": r.psnr, "error": r.error} for r in rows],
        mean_gain_over_constant_db=float(np.mean([r.psnr["estimate"] - r.psnr["constant"] for r in rows])),
        beats_constant=yardstick.beats_constant(rows),
    )


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else IMAGES
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else SEEDS
    priors = sys.argv[3].split(",") if len(sys.argv) > 3 else ["none", "fkp"]
    cases = yardstick.make_cases(count)
    sigma = yardstick.best_constant_sigma(cases)
    for prior in priors:
        rows, seconds, cpu, estimates = run_mode(prior, cases, runs)
        print(f"\n## prior {prior}: {count} images x {runs} seeds in one batch, {seconds / count:.1f} s/image, "
              f"{cpu / count:.1f} CPU s/image, {torch.get_num_threads()} threads\n")
        print(yardstick.table(yardstick.score(cases, [e.kernel_x2 for e in estimates], sigma), sigma))
        if runs > 1:
            for row, estimate in zip(rows, estimates):
                print(f"{row.name}: seed agreement {estimate.report['seed_agreement_db']:.1f} dB, "
                      f"gain over constant {row.psnr['estimate'] - row.psnr['constant']:+.2f} dB")
