"""`realsr upscale`: the command-line face of `realsr_fast.inference.upscale_files.upscale_files`."""
from __future__ import annotations

import argparse
import sys

from realsr_fast.commands.arguments import DEVICES, add_model_argument, non_negative_int, positive_int
from realsr_fast.inference.backends import BACKENDS
from realsr_fast.inference.upscale_files import OUTPUT_FORMATS, upscale_files
from realsr_fast.tiling import DEFAULT_TILE_PAD

DESCRIPTION = """\
Upscale photos x4 with a RealSR model (default: df2k, the NTIRE 2020 winner, installed with the
package; nothing is downloaded).

OUTPUT is a file when there is one input file and OUTPUT has an image suffix, otherwise a
folder (created) where each output keeps its input's name. The format comes from --format,
else JPEG and lossy WebP stay as they are and lossless inputs become PNG. 16-bit images stay
16-bit (PNG, TIFF), grey stays grey, alpha is kept (upscaled bicubically), EXIF orientation
is applied.

Existing outputs are skipped, so re-running a stopped batch resumes it; --overwrite redoes
them. Files that cannot be read are reported by name, the others are still upscaled, and the
exit code is 1 if any failed."""

EPILOG = """\
examples:
  realsr upscale photo.jpg -o photo_x4.jpg
  realsr upscale holiday/ scans/page1.tif -o upscaled/ --recursive --format png
  realsr upscale big.png -o out/ --device cpu --precision bf16 --tile 256
  realsr upscale photo.png -o out/ --device vulkan        (AMD / Intel / Apple GPU, via ncnn)
  realsr upscale photo.png -o out/ --backend ncnn --device cpu
  realsr upscale photo.png -o out/ --backend onnx --onnx realsr_fp32.onnx
  realsr upscale photo.png -o out/ --backend tensorrt --engine realsr.engine --cuda-graph"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "upscale",
        help="upscale images x4 with a RealSR model",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files and/or folders")
    parser.add_argument("-o", "--output", required=True, metavar="OUTPUT",
                        help="output file (one input file) or folder")
    add_model_argument(parser, help="a named model (see `realsr models`) or a weight file: ncnn "
                       ".param, .pth or .safetensors (default: %(default)s)")
    parser.add_argument("--device", default="auto", type=upscale_device, metavar="auto|cpu|cuda|vulkan[:N]",
                        help="auto picks CUDA when present; vulkan[:N] (any GPU: AMD, Intel, Apple, "
                        "NVIDIA) runs on ncnn (default: %(default)s)")
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"),
                        help="auto: fp16 on CUDA; on the CPU bf16 where it is native (AVX512-BF16, "
                        "AMX), else fp32; fp32 is exact on every backend (default: %(default)s)")
    parser.add_argument("--tile", type=positive_int, default=None, metavar="N",
                        help="tile size in input pixels (default: chosen from free GPU "
                        "memory, or from the image size on the CPU)")
    parser.add_argument("--tile-pad", type=non_negative_int, default=DEFAULT_TILE_PAD, metavar="N",
                        help="input pixels of context around each tile (default: %(default)s)")
    parser.add_argument("--backend", default="auto", choices=tuple(BACKENDS),
                        help="inference backend: auto (the fastest for this machine, says which "
                        "and why), torch, ncnn (CPU or Vulkan GPU, ncnn models; pip install "
                        "'realsr_fast[ncnn]'), onnx (ONNX Runtime, pip install 'realsr_fast[onnx]') "
                        "or tensorrt (NVIDIA GPU, pip install 'realsr_fast[tensorrt]') "
                        "(default: %(default)s)")
    parser.add_argument("--onnx", default=None, metavar="PATH",
                        help="with --backend onnx: a graph from `realsr export onnx` (default: "
                        "the model's, exported once to the cache)")
    parser.add_argument("--engine", default=None, metavar="PATH",
                        help="with --backend tensorrt: an engine from `realsr export tensorrt` "
                        "(built there when missing; default: the model's, in the cache)")
    parser.add_argument("--rebuild-engine", action="store_true",
                        help="with --backend tensorrt: rebuild the engine (e.g. one made for "
                        "another GPU or TensorRT version)")
    parser.add_argument("--cuda-graph", action="store_true",
                        help="with --backend tensorrt: replay each tile shape as a CUDA graph")
    parser.add_argument("--recursive", action="store_true",
                        help="also upscale images in sub-folders")
    parser.add_argument("--format", dest="fmt", choices=tuple(OUTPUT_FORMATS), default=None,
                        help="output format (default: the input's; PNG for lossless inputs)")
    parser.add_argument("--overwrite", action="store_true",
                        help="redo outputs that already exist (default: skip them)")
    parser.set_defaults(func=run)


def upscale_device(text: str) -> str:
    """`--device`: auto, cpu, cuda, cuda:N, vulkan or vulkan:N (argparse type)."""
    kind, _, index = text.partition(":")
    if text in DEVICES or (kind in ("cuda", "vulkan") and (not index or index.isdigit())):
        return text
    raise argparse.ArgumentTypeError(f"{text!r} is not auto, cpu, cuda[:N] or vulkan[:N]")


def run(args: argparse.Namespace) -> int:
    report = upscale_files(
        args.inputs, args.output, model=args.model, device=args.device, precision=args.precision,
        tile=args.tile, tile_pad=args.tile_pad, backend=args.backend, onnx=args.onnx,
        engine=args.engine, rebuild_engine=args.rebuild_engine, cuda_graph=args.cuda_graph,
        recursive=args.recursive,
        fmt=args.fmt, overwrite=args.overwrite,
    )
    print(report.summary(), file=sys.stdout if report.ok else sys.stderr)
    return 0 if report.ok else 1

