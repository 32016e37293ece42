"""The `ncnn` package upscaling one image file with the default model, as a user of it would:
read, run on the CPU (2 threads), write the PNG; the whole image at once, or `--tile N` tiles with
10 px of context each (realsr-ncnn-vulkan's prepadding for this model). The baseline of the
whole-process timing of a large photo in benchmarks/README.md ("A 1000x750 photo"):

    /usr/bin/time -v python benchmarks/ncnn_package_upscale.py photo.png out.png [--tile 200]
    /usr/bin/time -v realsr upscale photo.png -o out_dir
"""
from __future__ import annotations

import argparse

import ncnn
import numpy as np
from PIL import Image

from realsr_fast.models import zoo

SCALE, CONTEXT = 4, 10


def network(model: str = "df2k") -> ncnn.Net:
    """The named model's ncnn files in the `ncnn` package, 2 threads (its default CPU options)."""
    param, weights = zoo.ncnn_files(model)
    net = ncnn.Net()
    net.opt.num_threads = 2
    net.load_param(str(param))
    net.load_model(str(weights))
    return net


def run(net: ncnn.Net, chw: np.ndarray) -> np.ndarray:
    """(3, h, w) float32 in [0, 1] -> (3, 4h, 4w)."""
    chw = np.ascontiguousarray(chw)  # ncnn.Mat borrows this buffer: it must outlive the extraction
    extractor = net.create_extractor()
    extractor.input("data", ncnn.Mat(chw))
    _, out = extractor.extract("output")
    return np.array(out)


def upscale(net: ncnn.Net, chw: np.ndarray, tile: int | None) -> np.ndarray:
    """The whole image, or tile by tile with CONTEXT px around each (cropped off the output)."""
    if tile is None:
        return run(net, chw)
    _, height, width = chw.shape
    out = np.empty((3, SCALE * height, SCALE * width), np.float32)
    for top in range(0, height, tile):
        for left in range(0, width, tile):
            y0, x0 = max(top - CONTEXT, 0), max(left - CONTEXT, 0)
            y1, x1 = min(top + tile + CONTEXT, height), min(left + tile + CONTEXT, width)
            piece = run(net, chw[:, y0:y1, x0:x1])
            bottom, right = min(top + tile, height), min(left + tile, width)
            out[:, SCALE * top:SCALE * bottom, SCALE * left:SCALE * right] = piece[
                :, SCALE * (top - y0):SCALE * (bottom - y0), SCALE * (left - x0):SCALE * (right - x0)]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source")
    parser.add_argument("target")
    parser.add_argument("--tile", type=int, default=None, help="tile side in input pixels (default: whole image)")
    args = parser.parse_args()
    chw = np.asarray(Image.open(args.source).convert("RGB"), np.float32).transpose(2, 0, 1) / 255
    out = upscale(network(), chw, args.tile)
    Image.fromarray((np.clip(out, 0, 1).transpose(1, 2, 0) * 255).round().astype(np.uint8)).save(args.target)


if __name__ == "__main__":
    main()
