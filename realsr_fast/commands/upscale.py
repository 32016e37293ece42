"""`realsr upscale`: the command-line face of `realsr_fast.inference.upscale_files.upscale_files`."""
from __future__ import annotations

import argparse
import sys

from realsr_fast.commands.arguments import (
    add_model_argument,
    add_offline_argument,
    apply_offline,
    check_model,
    fraction,
    non_negative_int,
    positive_float,
    positive_int,
)
from realsr_fast.commands.compare import add_report_argument, write_upscale_page
from realsr_fast.errors import RealSRError
from realsr_fast.image_formats import DEFAULT_QUALITY, OUTPUT_FORMATS
from realsr_fast.inference.backends import BACKENDS, DEFAULT_STRENGTH_BASE, UpscalerSettings, device_kinds
from realsr_fast.tiling import DEFAULT_TILE_PAD

DESCRIPTION = """\
Upscale photos x4 with a RealSR model (default: df2k, the NTIRE 2020 winner, installed with the
package; nothing is downloaded), or to any size: --outscale 2.5, --width 3000, --height 2000, or
both --width and --height for exactly that size (stretched if the aspect ratio differs). Sizes are
rounded to the nearest pixel, halves up. The model's x4 is then resized with MATLAB's antialiased
bicubic in linear light (docs/upscaling.md).

OUTPUT is a file when there is one input file and OUTPUT has an image suffix, otherwise a
folder (created) where each output keeps its input's name. The format comes from --format,
else JPEG and lossy WebP stay as they are and lossless inputs become PNG. 16-bit images stay
16-bit (PNG, TIFF), grey stays grey, alpha is kept (upscaled bicubically), EXIF orientation
is applied. EXIF (orientation reset to 1), the ICC colour profile, XMP and DPI (multiplied by the
factor) are kept in PNG, JPEG, WebP and TIFF outputs (TIFF: without the EXIF sub-IFD; 16-bit
colour TIFF: none); --strip-metadata drops them. HEIC/HEIF/AVIF inputs need pillow-heif
(pip install 'realsr_fast[heif]') and become JPEG.

--strength S (0..1) blends the GAN model with a PSNR-oriented one of the same architecture
(network interpolation, every weight (1-S)*base + S*model): 1 is the model alone, lower is
smoother and more faithful, less invented texture. The base (--strength-base, default
esrgan-psnr) is fetched on first use; every backend runs the blend.

Existing outputs are skipped, so re-running a stopped batch resumes it; --overwrite redoes
them. Files that cannot be read are reported by name, the others are still upscaled, and the
exit code is 1 if any failed."""

EPILOG = """\
examples:
  realsr upscale photo.jpg -o photo_x4.jpg
  realsr upscale clip.mp4 -o clip_x4.mp4 --crf 18 --start 60 --duration 10
  torchrun --nproc_per_node 4 -m realsr_fast upscale photos/ -o out/   (4 GPUs; docs/scaling_out.md)
  realsr upscale photo.jpg -o photo_x2.jpg -s 2 --quality 90
  realsr upscale photo.heic -o big.jpg --width 3840 --strength 0.7
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
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="image or video (.mp4 .mkv .mov .webm .avi .m4v) files and/or folders")
    parser.add_argument("-o", "--output", required=True, metavar="OUTPUT",
                        help="output file (one input file) or folder")
    add_upscaler_arguments(parser)
    parser.add_argument("--recursive", action="store_true",
                        help="also upscale images in sub-folders")
    parser.add_argument("--format", dest="fmt", choices=tuple(OUTPUT_FORMATS), default=None,
                        help="output format (default: the input's; PNG for lossless inputs)")
    parser.add_argument("--overwrite", action="store_true",
                        help="redo outputs that already exist (default: skip them)")
    add_output_arguments(parser)
    add_offline_argument(parser)
    add_report_argument(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bars or notes, only the result")
    add_video_arguments(parser)
    parser.set_defaults(func=run, upscale_parser=parser)


def add_upscaler_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `UpscalerSettings`: model, device, precision, tiles, backend (with each
    backend's own options from `BACKENDS`) and strength."""
    add_model_argument(parser, help="a named model (see `realsr models`) or a weight file: ncnn "
                       ".param, .pth or .safetensors (default: %(default)s)")
    parser.add_argument("--device", default="auto", type=upscale_device, metavar=f"auto|{'|'.join(device_kinds())}[:N]",
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
    backends = ", ".join(f"{name} ({backend.summary}"
                         + (f"; pip install 'realsr_fast[{backend.extra}]')" if backend.extra else ")")
                         for name, backend in BACKENDS.items())
    parser.add_argument("--backend", default="auto", choices=tuple(BACKENDS),
                        help=f"inference backend: {backends} (default: %(default)s)")
    for name, backend in BACKENDS.items():
        if backend.options:
            group = parser.add_argument_group(f"with --backend {name}")
            for option in backend.options:
                if option.parse is None:
                    group.add_argument(option.flag, dest=option.name, action="store_true", help=option.help)
                else:
                    group.add_argument(option.flag, dest=option.name, type=option.parse, default=option.default,
                                       metavar=option.metavar, help=option.help)
    look = parser.add_argument_group("strength")
    look.add_argument("--strength", type=fraction, default=1.0, metavar="0..1",
                      help="1: the model alone (default); lower blends in --strength-base, "
                      "less invented texture")
    look.add_argument("--strength-base", default=DEFAULT_STRENGTH_BASE, metavar="MODEL",
                      help="the PSNR-oriented model of the same architecture blended in by --strength "
                      "(a name or a weights file; e.g. df2k for a `realsr adapt` model) "
                      "(default: %(default)s, fetched on first use)")


def upscaler_settings(args: argparse.Namespace) -> UpscalerSettings:
    """The settings that `add_upscaler_arguments`' options give; backend options left at their
    default are not given (so that one of another backend, given, is refused by name)."""
    options = {option.name: getattr(args, option.name) for backend in BACKENDS.values()
               for option in backend.options if getattr(args, option.name) != option.initial}
    return UpscalerSettings(args.model, args.device, args.precision, args.tile, args.tile_pad, args.backend,
                            args.strength, args.strength_base, options)


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    """The output's size (`OutputSize`) and file options (quality, metadata)."""
    size = parser.add_argument_group("output size (default: the model's x4)")
    size.add_argument("-s", "--outscale", type=positive_float, default=None, metavar="FLOAT",
                      help="scale factor, e.g. 2 or 2.5 (the x4 output is then resized)")
    size.add_argument("--width", type=positive_int, default=None, metavar="PIXELS",
                      help="output width; alone, the height follows the aspect ratio")
    size.add_argument("--height", type=positive_int, default=None, metavar="PIXELS",
                      help="output height; alone, the width follows the aspect ratio; with --width, "
                      "exactly width x height (stretched if the aspect ratio differs)")
    output = parser.add_argument_group("output file")
    output.add_argument("--quality", type=quality, default=None, metavar="1-100",
                        help=f"JPEG and WebP quality (default: {DEFAULT_QUALITY}; lossless formats ignore it)")
    output.add_argument("--strip-metadata", action="store_true",
                        help="write no EXIF, ICC profile, XMP or DPI (default: kept from the input)")


def upscale_device(text: str) -> str:
    """`--device`: auto, or a device kind of some backend (cpu, cuda, vulkan), with :N for any but
    cpu (argparse type)."""
    kind, colon, index = text.partition(":")
    if text == "auto" or (kind in device_kinds() and (not colon or (kind != "cpu" and index.isdigit()))):
        return text
    names = ["auto", *(kind if kind == "cpu" else f"{kind}[:N]" for kind in device_kinds())]
    raise argparse.ArgumentTypeError(f"{text!r} is not {', '.join(names[:-1])} or {names[-1]}")


def quality(text: str) -> int:
    """`--quality`: a whole number from 1 to 100 (argparse type)."""
    value = positive_int(text)
    if value > 100:
        raise argparse.ArgumentTypeError(f"must be at most 100, got {value}")
    return value


def run(args: argparse.Namespace) -> int:
    from realsr_fast.inference.output_size import OutputSize
    from realsr_fast.inference.ranks import gather_reports, shard
    from realsr_fast.inference.upscale_files import ImageOptions, upscale_files
    from realsr_fast.inference.upscale_video import VideoOptions, plan_video_jobs, split_video_inputs, upscale_videos
    from realsr_fast.report.compare_page import check_page_path

    if args.outscale is not None and (args.width is not None or args.height is not None):
        args.upscale_parser.error("--outscale and --width/--height both set the output size; give one of them")
    apply_offline(args)
    check_model(args.model)  # an unknown name: one line, exit 2, before any work
    if args.report:
        check_page_path(args.report)  # before any work
    try:
        size = OutputSize(args.outscale, args.width, args.height)
    except RealSRError as exc:
        args.upscale_parser.error(str(exc))
    settings = upscaler_settings(args)  # the same upscaler for images and videos, checked before any work
    rank, world = shard()  # under torchrun: this rank's jobs are rank::world of the plan
    progress = rank == 0 and not args.quiet
    videos, images = split_video_inputs(args.inputs, args.recursive)
    if videos:
        plan_video_jobs(videos, args.output, len(args.inputs) == 1)  # refuse a bad plan before any work
    reports = []
    if images or not videos:
        options = ImageOptions(args.recursive, args.fmt, args.overwrite, size, args.quality, args.strip_metadata)
        reports.append(upscale_files(images or args.inputs, args.output, settings, options, progress=progress,
                                     shard=(rank, world)))
    if videos:
        video = VideoOptions(args.codec, args.crf, args.pix_fmt, args.start, args.duration, size=size,
                             metadata=not args.strip_metadata)
        reports.append(upscale_videos(videos, args.output, settings, video, single_input=len(args.inputs) == 1,
                                      overwrite=args.overwrite, progress=progress, shard=(rank, world)))
    reports = gather_reports(reports)  # every rank's, merged on rank 0; None on the others
    if reports is None:
        return 0
    for report in reports:
        print(report.summary(), file=sys.stdout if report.ok else sys.stderr)
    if args.report and (images or not videos):
        write_upscale_page(args.report, images or args.inputs, args.output, args.recursive, args.fmt, reports[0], args.quiet)
    return 0 if all(report.ok for report in reports) else 1


def add_video_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of video inputs (.mp4, .mkv, .mov, .webm, .avi, .m4v)."""
    video = parser.add_argument_group(
        "video (pip install 'realsr_fast[video]')",
        "Videos are decoded, upscaled and encoded as a stream (memory: a few frames); frame rate, "
        "timestamps, the rotation tag, tags (title, language...; --strip-metadata drops them), audio and "
        "subtitles (copied, not re-encoded) are kept. The "
        "output goes to a hidden temporary file renamed at the end: an interrupted run leaves no "
        "file under the output name.")
    video.add_argument("--codec", default=None, metavar="NAME",
                       help="video encoder (default: libx264; libvpx-vp9 for .webm)")
    video.add_argument("--crf", type=non_negative_int, default=None, metavar="N",
                       help="constant rate factor: lower is better and bigger (default: the encoder's)")
    video.add_argument("--pix-fmt", default=None, metavar="FMT",
                       help="encoder pixel format (default: the input's when the encoder takes it, so "
                       "10-bit stays 10-bit; else yuv420p)")
    video.add_argument("--start", type=non_negative_float, default=0.0, metavar="SECONDS",
                       help="upscale from this time (default: the beginning)")
    video.add_argument("--duration", type=positive_float, default=None, metavar="SECONDS",
                       help="upscale this many seconds (default: to the end)")


def non_negative_float(text: str) -> float:
    """`--start`: a number of seconds >= 0 (argparse type)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text}")
    return value

