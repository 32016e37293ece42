"""`realsr dataset`: the command-line face of `realsr_fast.data.paired.build_paired_dataset`."""
from __future__ import annotations

import argparse
import sys

from realsr_fast.commands.arguments import non_negative_int, positive_int
from realsr_fast.data.paired_settings import PairedSettings
from realsr_fast.data.recipes import OFFLINE_RECIPES

DESCRIPTION = """\
Write a paired (HR, LR) dataset in Real-SR's layout: OUT/HR/NAME.png, OUT/LR/NAME.png, the noise
bank in OUT/noise (hard links, or copies across file systems) and OUT/manifest.json (which
kernel made which LR).

--recipe kernel (Track 2): one random kernel of KERNEL_DIR per HR image (seeded by --seed);
LR = blur with symmetric boundary, keep every SCALE-th pixel, rounded once to 8 bits.
KERNEL_DIR is a `realsr kernels` output or an original KernelGAN one (*/*_kernel_x4.mat).
--recipe bicubic (Track 1): LR = MATLAB bicubic resize by 1/SCALE; no kernels needed.
Noise is not baked into LR: RealSR adds it at training time, from OUT/noise.

HR sizes are cropped to a multiple of SCALE. Pairs that exist are skipped unless --overwrite;
unreadable images are reported by name and the exit code is then 1. Source folders are only read."""

DEFAULTS = PairedSettings()

EPILOG = """\
examples:
  realsr dataset --hr DPED/HR --kernels DPED/kernels --noise DPED/noise -o DPED/pairs
  realsr dataset --hr DF2K/HR --noise DF2K/noise -o DF2K/pairs --recipe bicubic"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "dataset", help="write paired HR/LR training data (kernel or bicubic recipe)", description=DESCRIPTION,
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--hr", required=True, metavar="HR_DIR", help="folder of clean HR images (`realsr cleanup`)")
    parser.add_argument("--kernels", metavar="KERNEL_DIR", help="folder of kernels (needed by --recipe kernel)")
    parser.add_argument("--noise", metavar="NOISE_DIR", help="folder of noise patches (`realsr noise`)")
    parser.add_argument("-o", "--output", required=True, metavar="OUT", help="output folder (created)")
    parser.add_argument("--scale", type=positive_int, default=DEFAULTS.scale, help="SR scale (default: %(default)s)")
    parser.add_argument("--recipe", choices=OFFLINE_RECIPES, default=DEFAULTS.recipe, help="degradation (default: %(default)s)")
    parser.add_argument("--seed", type=non_negative_int, default=DEFAULTS.seed,
                        help="seed of the kernel choices (default: %(default)s)")
    parser.add_argument("--overwrite", action="store_true", help="redo pairs that exist")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or notes, only the result")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from realsr_fast.data.paired import build_paired_dataset

    settings = PairedSettings(args.recipe, args.kernels, args.noise, args.scale, args.seed)
    report = build_paired_dataset(args.hr, args.output, settings, overwrite=args.overwrite, progress=not args.quiet)
    for note in [] if args.quiet else report.notes:
        print(f"note: {note}", file=sys.stderr)
    noise = f", {report.noise_patches} noise patches in {args.output}/noise" if args.noise else ""
    print(report.summary(noise), file=sys.stdout if report.ok else sys.stderr)
    return 0 if report.ok else 1
