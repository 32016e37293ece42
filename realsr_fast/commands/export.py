"""`realsr export onnx|tensorrt`: the command-line face of `realsr_fast.export`."""
from __future__ import annotations

import argparse
import sys

from realsr_fast.commands.arguments import add_model_argument, non_negative_int, positive_int
from realsr_fast.tiling import DEFAULT_TILE_PAD

DESCRIPTION = """\
Export a RealSR model for deployment.

onnx: an ONNX graph with dynamic batch, height and width. --precision fp16 computes in fp16
with fp32 input/output (explicit casts) and keeps in fp32 the blocks whose activations come
near the fp16 limit on calibration images (measured for each model). Metadata: scale, weights
sha256, tile pad, precision. Run it with `realsr upscale --backend onnx --onnx PATH`.

tensorrt: a TensorRT engine built from the fp16 graph as a strongly typed network, for
square tiles from --min to --max input pixels (padding included), with a JSON sidecar
(PATH.json: TensorRT version, GPU, compute capability, profile, weights sha256). An engine
runs only on the GPU model and TensorRT version it was built with. Needs an NVIDIA GPU and
pip install 'realsr_fast[tensorrt]'."""

EPILOG = """\
examples:
  realsr export onnx -o realsr_fp32.onnx
  realsr export onnx --model my_model.safetensors --precision fp16 -o realsr_fp16.onnx
  realsr export tensorrt -o realsr.engine --min 8 --opt 512 --max 512 --timing-cache trt.cache"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("export", help="export a model to ONNX or a TensorRT engine",
                                   description=DESCRIPTION, epilog=EPILOG,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    formats = parser.add_subparsers(dest="target", metavar="FORMAT", required=True)
    onnx = formats.add_parser("onnx", help="an ONNX graph (fp32 or fp16)")
    _common(onnx)
    onnx.add_argument("--precision", default="fp32", choices=("fp32", "fp16"),
                      help="compute precision of the graph; its I/O is fp32 either way "
                      "(default: %(default)s)")
    onnx.add_argument("--opset", type=_opset, default=17, metavar="N",
                      help="ONNX opset, 17 or newer (default: %(default)s)")
    trt = formats.add_parser("tensorrt", help="a TensorRT fp16 engine for this GPU")
    _common(trt)
    trt.add_argument("--min", type=positive_int, default=8, metavar="PX",
                     help="smallest input side of the profile (default: %(default)s)")
    trt.add_argument("--opt", type=positive_int, default=512, metavar="PX",
                     help="input side the engine is tuned for (default: %(default)s)")
    trt.add_argument("--max", type=positive_int, default=512, metavar="PX",
                     help="largest input side, tile + 2 x tile pad (default: %(default)s)")
    trt.add_argument("--timing-cache", default=None, metavar="PATH",
                     help="TensorRT timing cache, read when present and updated: faster rebuilds")
    parser.set_defaults(func=run)


def _common(parser: argparse.ArgumentParser) -> None:
    add_model_argument(parser)
    parser.add_argument("-o", "--output", required=True, metavar="PATH", help="file to write")
    parser.add_argument("--tile-pad", type=non_negative_int, default=DEFAULT_TILE_PAD, metavar="N",
                        help="tile context recorded for the tiler (default: %(default)s)")


def _opset(text: str) -> int:
    value = positive_int(text)
    if value < 17:
        raise argparse.ArgumentTypeError(f"opset must be 17 or newer, got {value}")
    return value


def run(args: argparse.Namespace) -> int:
    from realsr_fast.models.loading import load_model

    model = load_model(args.model)
    if args.target == "onnx":
        from realsr_fast.export.onnx_export import export_onnx

        info = export_onnx(model, args.output, precision=args.precision, opset=args.opset,
                           tile_pad=args.tile_pad)
        kept = ", ".join(info.fp32_units) or "none"
        print(f"wrote {args.output}: {info.precision} ONNX (opset {info.opset}), x{info.scale}, "
              f"fp32 blocks: {kept}, weights sha256 {info.model_sha256[:16]}")
        return 0
    from realsr_fast.export.tensorrt_build import Profile, export_tensorrt

    profile = Profile(args.min, args.opt, args.max)
    print(f"building a TensorRT engine for inputs {profile.min}-{profile.max} px (minutes)...",
          file=sys.stderr)
    sidecar = export_tensorrt(model, args.output, profile, args.timing_cache, args.tile_pad)
    print(f"wrote {args.output} (+ .json) for {sidecar.target.gpu_name} (sm "
          f"{sidecar.target.compute_capability}), TensorRT {sidecar.target.tensorrt_version}")
    return 0
