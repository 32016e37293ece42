"""`realsr export [MODEL] --format ncnn|onnx|pth|safetensors|tensorrt -o PATH`: the command-line face of
`realsr_fast.export` (and of the weight writers in `models.formats`).

The older form `realsr export onnx|tensorrt [--model M] -o PATH` still works: a first argument that
is a format name (and not an existing file) is the format.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from realsr_fast.commands.arguments import check_model, non_negative_int, positive_int
from realsr_fast.errors import UsageError
from realsr_fast.models import DEFAULT_MODEL
from realsr_fast.tiling import DEFAULT_TILE_PAD

#: --format choices, and the output suffixes that imply each when --format is not given.
FORMATS: dict[str, tuple[str, ...]] = {
    "ncnn": (".param", ".bin"),
    "onnx": (".onnx",),
    "pth": (".pth", ".pt"),
    "safetensors": (".safetensors",),
    "tensorrt": (".engine", ".plan"),
}

DESCRIPTION = """\
Write a model (a named one, `realsr adapt`'s model.safetensors, or any RRDBNet weights file) in
another form. The format comes from --format, else from the output's suffix (none: an ncnn folder).

ncnn: .param + .bin with the graph, layer and blob names of the official RealSR x4.param, so
realsr-ncnn-vulkan, upscayl and the `ncnn` package load it as they load the official model.
-o NAME.param writes NAME.param and NAME.bin; -o FOLDER writes FOLDER/x4.param and x4.bin
(realsr-ncnn-vulkan's -m folder). Weights are stored in fp32 (--ncnn-fp16: fp16, as the
official files; half the size).

pth / safetensors: the weights alone (Real-SR's key names in the .pth; realsr_fast's metadata in
the .safetensors), readable by `--model PATH` here and by the Real-SR / ESRGAN code.

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
  realsr export my_camera/model.safetensors --format ncnn -o models-mycamera/
  realsr export df2k -o df2k.param
  realsr export realesrgan-x4plus --format safetensors -o realesrgan.safetensors
  realsr export df2k --format onnx --precision fp16 -o realsr_fp16.onnx
  realsr export onnx -o realsr_fp32.onnx                         (the older form: format first)
  realsr export tensorrt -o realsr.engine --min 8 --opt 512 --max 512 --timing-cache trt.cache"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("export", help="write a model as ncnn, ONNX, .pth, .safetensors or a TensorRT engine",
                                   description=DESCRIPTION, epilog=EPILOG,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", nargs="?", default=None, metavar="MODEL",
                        help=f"a named model (see `realsr models`) or a weights file (default: {DEFAULT_MODEL})")
    parser.add_argument("--model", dest="model_option", default=None, help=argparse.SUPPRESS)  # the older form
    parser.add_argument("-f", "--format", dest="fmt", choices=tuple(FORMATS), default=None,
                        help="what to write (default: from the output's suffix)")
    parser.add_argument("-o", "--output", required=True, metavar="PATH", help="file (or, for ncnn, folder) to write")
    parser.add_argument("--ncnn-fp16", action="store_true", help="ncnn: store the weights in fp16, as the official files do")
    parser.add_argument("--tile-pad", type=non_negative_int, default=DEFAULT_TILE_PAD, metavar="N",
                        help="onnx, tensorrt: tile context recorded for the tiler (default: %(default)s)")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "fp16"),
                        help="onnx: compute precision of the graph; its I/O is fp32 either way "
                        "(default: %(default)s)")
    parser.add_argument("--opset", type=_opset, default=17, metavar="N",
                        help="onnx: ONNX opset, 17 or newer (default: %(default)s)")
    parser.add_argument("--min", type=positive_int, default=8, metavar="PX",
                        help="tensorrt: smallest input side of the profile (default: %(default)s)")
    parser.add_argument("--opt", type=positive_int, default=512, metavar="PX",
                        help="tensorrt: input side the engine is tuned for (default: %(default)s)")
    parser.add_argument("--max", type=positive_int, default=512, metavar="PX",
                        help="tensorrt: largest input side, tile + 2 x tile pad (default: %(default)s)")
    parser.add_argument("--timing-cache", default=None, metavar="PATH",
                        help="tensorrt: timing cache, read when present and updated: faster rebuilds")
    parser.set_defaults(func=run)


def _opset(text: str) -> int:
    value = positive_int(text)
    if value < 17:
        raise argparse.ArgumentTypeError(f"opset must be 17 or newer, got {value}")
    return value


def resolve(args: argparse.Namespace) -> tuple[str, str]:
    """(model, format) from the positional argument, --model (older form), --format and -o.

    Raises:
        UsageError: two models, two different formats, or no format to be had.
    """
    source, fmt = args.source, args.fmt
    if source in FORMATS and not Path(source).exists():  # `realsr export onnx -o ...`
        if fmt is not None and fmt != source:
            raise UsageError(f"export {source} and --format {fmt} contradict each other; give one format")
        source, fmt = None, source
    if source is not None and args.model_option is not None:
        raise UsageError(f"two models given ({source} and --model {args.model_option}); give one")
    model = source or args.model_option or DEFAULT_MODEL
    if fmt is None:
        suffix = Path(args.output).suffix.lower()
        fmt = next((name for name, suffixes in FORMATS.items() if suffix in suffixes), None)
        if fmt is None and (not suffix or args.output.endswith(("/", "\\")) or Path(args.output).is_dir()):
            fmt = "ncnn"  # a folder: realsr-ncnn-vulkan's models-NAME/x4.param layout
        if fmt is None:
            raise UsageError(f"cannot tell the format from {args.output}: add --format "
                             f"{'|'.join(FORMATS)}")
    return model, fmt


def run(args: argparse.Namespace) -> int:
    model_name, fmt = resolve(args)
    check_model(model_name)
    from realsr_fast.models.loading import load_model

    model = load_model(model_name)
    if fmt == "ncnn":
        from realsr_fast.export.ncnn_export import export_ncnn

        param, weights = export_ncnn(model, args.output, fp16=args.ncnn_fp16)
        print(f"wrote {param} and {weights.name}: ncnn x{model.scale} RRDBNet (nb {model.nb}, "
              f"{'fp16' if args.ncnn_fp16 else 'fp32'} weights), input blob data, output blob output")
        return 0
    if fmt in ("pth", "safetensors"):
        return _write_weights(model, model_name, fmt, args.output)
    if fmt == "onnx":
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


def _write_weights(model, model_name: str, fmt: str, output: str) -> int:
    """The weights as a .pth (Real-SR's names) or a realsr_fast .safetensors, atomically."""
    import torch

    from realsr_fast.io import atomic_path
    from realsr_fast.models.formats import save_safetensors

    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if fmt == "safetensors":
        save_safetensors(output, state, model.config(), {"source": str(model_name)})
    else:
        try:
            Path(output).parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(output) as temporary:
                torch.save(state, temporary)
        except OSError as exc:
            raise UsageError(f"cannot write {output}: {exc.strerror or exc}") from None
    print(f"wrote {output}: x{model.scale} RRDBNet weights ({fmt})")
    return 0
