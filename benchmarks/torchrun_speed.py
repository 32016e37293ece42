"""Wall time of `realsr upscale` on 8 photo crops: one process vs `torchrun --nproc_per_node 2`, one
thread per process (OMP_NUM_THREADS=1), the default model on torch fp32. Start-up (Python, torch,
the model, and for torchrun the rendezvous and the gloo group of the report) is included, as a user
pays it.

    python benchmarks/torchrun_speed.py [--size 96] [--repeat 2] [--json benchmarks/results/torchrun_cpu.json]

The two are run alternately `--repeat` times and the fastest of each kept. Prints both times and their
ratio (torchrun / one process); benchmarks/README.md has the numbers.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def photos(folder: Path, size: int, count: int = 8) -> None:
    from skimage import data

    sources = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    for i in range(count):
        image = sources[i % len(sources)]
        top, left = (i * 37) % (image.shape[0] - size), (i * 53) % (image.shape[1] - size)
        Image.fromarray(np.ascontiguousarray(image[top:top + size, left:left + size, :3])).save(folder / f"{i}.png")


def timed(command: list[str]) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    subprocess.run(command, check=True, env=env, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=96, help="side of the square crops (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=2, help="alternate runs of each (default: %(default)s)")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "in"
        folder.mkdir()
        photos(folder, args.size)
        upscale = ["-m", "realsr_fast", "upscale", str(folder), "--device", "cpu", "--backend", "torch",
                   "--precision", "fp32"]
        ones, twos = [], []
        for attempt in range(args.repeat):
            ones.append(timed([sys.executable, *upscale, "-o", f"{tmp}/one{attempt}"]))
            twos.append(timed([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                               *upscale, "-o", f"{tmp}/two{attempt}"]))
        one, two = min(ones), min(twos)
        same = all((Path(tmp) / "one0" / p.name).read_bytes() == p.read_bytes() for p in (Path(tmp) / "two0").iterdir())
    result = {"images": 8, "size": args.size, "one_process_s": round(one, 2), "torchrun_2_s": round(two, 2),
              "ratio": round(two / one, 3), "outputs_identical": same, "all_one_s": [round(t, 2) for t in ones],
              "all_torchrun_2_s": [round(t, 2) for t in twos], "load_before": load, "load_after": os.getloadavg()[0]}
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
