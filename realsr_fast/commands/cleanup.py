"""`realsr cleanup`: the command-line face of `realsr_fast.data.cleanup.cleanup_folder`."""
from __future__ import annotations

import argparse
import sys

from realsr_fast.commands.arguments import positive_float, positive_int

DESCRIPTION = """\
Make clean HR images from real photos, as RealSR does: MATLAB bicubic resize by 1/FACTOR
(antialiased; noise and compression artefacts mostly vanish), rounded to 8-bit RGB, cropped at
the bottom and right to a multiple of the SR scale. Each photo SRC_DIR/NAME.* becomes
HR_DIR/NAME.png. SRC_DIR is only read.

Existing outputs are skipped (re-running resumes), --overwrite redoes them. Unreadable photos
are reported by name, the others still cleaned, and the exit code is then 1."""

EPILOG = """\
examples:
  realsr cleanup DPED/photos -o DPED/HR
  realsr cleanup DF2K/photos -o DF2K/HR --factor 2 --multiple 4"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "cleanup", help="make clean HR images from photos (bicubic 1/2)", description=DESCRIPTION,
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("source", metavar="SRC_DIR", help="folder of real photos")
    parser.add_argument("-o", "--output", required=True, metavar="HR_DIR", help="folder for the HR images (created)")
    parser.add_argument("--factor", type=positive_float, default=2.0,
                        help="down-scaling factor of the clean-up (default: %(default)g)")
    parser.add_argument("--multiple", type=positive_int, default=4,
                        help="crop HR sizes to a multiple of this, the SR scale (default: %(default)s)")
    parser.add_argument("--overwrite", action="store_true", help="redo outputs that exist")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or notes, only the result")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from realsr_fast.data.cleanup import cleanup_folder

    report = cleanup_folder(args.source, args.output, args.factor, args.multiple, args.overwrite, progress=not args.quiet)
    print(report.summary(), file=sys.stdout if report.ok else sys.stderr)
    return 0 if report.ok else 1
