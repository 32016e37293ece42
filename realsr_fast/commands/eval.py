"""`realsr eval`: the command-line face of `realsr_fast.evaluate.evaluate_folders`."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from realsr_fast.commands.arguments import add_offline_argument, apply_offline, non_negative_int
from realsr_fast.errors import RealSRError, UsageError

DESCRIPTION = """\
Score super-resolved images against ground truth the way SR papers report it: PSNR and SSIM on
the Y channel of ITU-R BT.601 (MATLAB's rgb2ycbcr), CROP pixels removed from each side, SSIM
with an 11x11 Gaussian window (sigma 1.5); --rgb adds the RGB variants, --lpips adds LPIPS
(AlexNet v0.1, the `lpips` package); torchvision's ImageNet AlexNet weights (alexnet-owt-7be5be79.pth,
233 MB) are downloaded into the torch hub cache on first use, hash-checked (with --offline or
REALSR_OFFLINE=1, or no network, a note names the file and where to put it, and the rest is scored).

SR and GT images are paired by file name without the suffix; an SR name may add a tag such as
_x4 (0001_x4.png pairs with 0001.png). Unpaired, unreadable and size-mismatched files are
reported and skipped, and the exit code is then 1."""

EPILOG = """\
examples:
  realsr eval --sr results/ --gt DIV2K_valid_HR/
  realsr eval --sr results/ --gt gt/ --crop-border 4 --rgb --json scores.json --csv scores.csv"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="PSNR / SSIM (and LPIPS) of SR images against ground truth",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--sr", required=True, metavar="DIR", help="folder of super-resolved images")
    parser.add_argument("--gt", required=True, metavar="DIR", help="folder of ground-truth images")
    parser.add_argument("--crop-border", type=non_negative_int, default=4, metavar="CROP",
                        help="pixels removed from each side before scoring; the SR scale "
                        "(default: %(default)s)")
    parser.add_argument("--rgb", action="store_true", help="also report PSNR and SSIM on RGB")
    parser.add_argument("--lpips", action="store_true",
                        help="also report LPIPS (AlexNet; its weights are fetched on first use)")
    add_offline_argument(parser)
    parser.add_argument("--json", metavar="FILE", help="write the scores as JSON")
    parser.add_argument("--csv", metavar="FILE", help="write the scores as CSV")
    parser.add_argument("-o", "--output", metavar="FILE", default=None,
                        help="write the scores to FILE, as JSON (.json) or CSV (.csv)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or notes, only the result")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from realsr_fast.evaluate import evaluate_folders, format_table, write_csv, write_evaluation_json
    from realsr_fast.metrics import fetch_lpips_weights

    apply_offline(args)
    lpips = args.lpips
    if lpips:
        try:
            fetch_lpips_weights()
        except RealSRError as exc:  # offline or no network: score the rest, say why LPIPS is missing
            print(f"note: LPIPS skipped: {exc}", file=sys.stderr)
            lpips = False
    output_suffix = None if args.output is None else Path(args.output).suffix.lower()
    if output_suffix not in (None, ".json", ".csv"):
        raise UsageError(f"-o {args.output}: name a .json or .csv file (or use --json / --csv)")
    evaluation = evaluate_folders(args.sr, args.gt, crop_border=args.crop_border, rgb=args.rgb, lpips=lpips,
                                  progress=not args.quiet)
    print(format_table(evaluation))
    for note in [] if args.quiet else evaluation.notes:
        print(f"note: {note}", file=sys.stderr)
    if args.json:
        write_evaluation_json(evaluation, args.json)
    if args.csv:
        write_csv(evaluation, args.csv)
    if output_suffix == ".json":
        write_evaluation_json(evaluation, args.output)
    elif output_suffix == ".csv":
        write_csv(evaluation, args.output)
    for problem in evaluation.problems:
        print(f"realsr eval: {problem}", file=sys.stderr)
    if evaluation.problems:
        print(f"realsr eval: {len(evaluation.problems)} problem(s), {len(evaluation.images)} image(s) scored",
              file=sys.stderr)
        return 1
    return 0

