"""`realsr noise`: the command-line face of `realsr_fast.data.noise_mining.mine_noise_folder`."""
from __future__ import annotations

import argparse
import sys

from realsr_fast.commands.arguments import finite_float, fraction, positive_int
from realsr_fast.data.noise_settings import NOISE_TRACKS, NoiseSettings

DESCRIPTION = """\
Collect samples of the cameras' real noise, as RealSR does: every full PATCH x PATCH window of
each full-resolution photo (steps of STRIDE, last row and column included) whose grey level (PIL
'L') has variance < MAX_VAR and mean > MIN_MEAN is saved as NOISE_DIR/NAME_y<Y>_x<X>.png (the
raw RGB patch), listed with its source, position, mean and variance in NOISE_DIR/manifest.json.

RealSR used --max-var 20 with --min-mean 0 (DF2K) or 50 (DPED): --track df2k / --track dped set
both (an explicit --max-var or --min-mean still wins). With a stride below the patch
size, --max-overlap and --max-per-image thin the kept patches, flattest first. When a photo keeps
nothing, a note says which threshold came closest and what value would keep a patch.

Unreadable photos are reported by name, the others still mined, and the exit code is then 1;
it is also 1 when no photo keeps any patch. Existing patch files are not rewritten unless
--overwrite. SRC_DIR is only read."""

EPILOG = """\
examples:
  realsr noise DPED/photos -o DPED/noise --track dped
  realsr noise DF2K/photos -o DF2K/noise --stride 128 --max-overlap 0.25 --max-per-image 20"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "noise", help="collect real-noise patches from flat regions of photos", description=DESCRIPTION,
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    defaults = NoiseSettings()
    parser.add_argument("source", metavar="SRC_DIR", help="folder of real photos (full resolution)")
    parser.add_argument("-o", "--output", required=True, metavar="NOISE_DIR", help="folder for the patches (created)")
    parser.add_argument("--patch", type=positive_int, default=defaults.patch, help="patch side (default: %(default)s)")
    parser.add_argument("--stride", type=positive_int, default=defaults.stride,
                        help="step between patches (default: %(default)s)")
    parser.add_argument("--track", choices=sorted(NOISE_TRACKS), default=None,
                        help="RealSR's thresholds for the NTIRE 2020 track (df2k: min mean 0, dped: 50)")
    parser.add_argument("--max-var", type=finite_float, default=None,
                        help=f"keep patches whose grey variance is below this (default: the track's, else "
                        f"{defaults.max_var:g})")
    parser.add_argument("--min-mean", type=finite_float, default=None,
                        help=f"keep patches whose grey mean is above this (default: the track's, else "
                        f"{defaults.min_mean:g})")
    parser.add_argument("--max-per-image", type=positive_int, default=None, metavar="N",
                        help="keep at most N patches per photo, the flattest (default: no limit)")
    parser.add_argument("--max-overlap", type=fraction, default=None, metavar="F",
                        help="no kept patch shares more than this fraction of its area with another "
                        "(default: no limit)")
    parser.add_argument("--overwrite", action="store_true", help="rewrite patch files that exist")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or notes, only the result")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from realsr_fast.data.noise_mining import mine_noise_folder

    base = NOISE_TRACKS[args.track] if args.track else NoiseSettings()
    max_var = base.max_var if args.max_var is None else args.max_var
    min_mean = base.min_mean if args.min_mean is None else args.min_mean
    settings = NoiseSettings(args.patch, args.stride, max_var, min_mean, args.max_per_image, args.max_overlap)
    report = mine_noise_folder(args.source, args.output, settings, args.overwrite, progress=not args.quiet)
    if not args.quiet:
        for note in report.notes:
            print(f"note: {note}", file=sys.stderr)
    print(report.summary(f", {report.patches} noise patch(es) kept in {args.output}"),
          file=sys.stdout if report.ok else sys.stderr)
    if report.hint:
        print(f"realsr noise: no patch qualified in any photo; {report.hint}", file=sys.stderr)
    return 0 if report.ok and report.patches else 1
