"""`realsr compare INPUT OUTPUT... -o page.html`: a comparison page for your own files
(`report.compare_page`, the report layer's slider machinery)."""
from __future__ import annotations

import argparse
from pathlib import Path

DESCRIPTION = """\
Write one self-contained HTML page (no network, opens in any browser, fits a phone) comparing
upscaled versions of one photo: the input upscaled bicubically beside each OUTPUT on a slider
over its busiest region, magnified by a whole number without smoothing, and a table of sizes,
scales and file sizes. Outputs of any size and any tool (realsr upscale, another upscaler, an
editor) can be compared; those of one size share a slider."""

EPILOG = """\
examples:
  realsr compare photo.jpg photo_x4.png -o photo.html
  realsr compare photo.jpg df2k.png realesrgan.png jpeg.png -o models.html"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("compare", help="an HTML page comparing upscaled versions of a photo with bicubic",
                                   description=DESCRIPTION, epilog=EPILOG,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", metavar="INPUT", help="the original (low-resolution) image")
    parser.add_argument("results", nargs="+", metavar="OUTPUT", help="upscaled versions of INPUT")
    parser.add_argument("-o", "--output", required=True, metavar="PAGE", help="the HTML page to write")
    parser.add_argument("--quiet", action="store_true", help="print nothing but errors")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from realsr_fast.errors import UsageError
    from realsr_fast.io import read_image
    from realsr_fast.report.compare_page import Comparison, Result, check_page_path, write_comparison_page

    check_page_path(args.output)
    paths = [Path(args.input), *map(Path, args.results)]
    for path in paths:
        if not path.is_file():
            raise UsageError(f"{path} is not a file")
    names = [path.name for path in paths[1:]]
    labels = [str(path) if names.count(path.name) > 1 else path.name for path in paths[1:]]
    results = [Result(label, read_image(path), None, path) for label, path in zip(labels, paths[1:])]
    page = write_comparison_page(args.output, [Comparison(paths[0].name, read_image(paths[0]), results, paths[0])],
                                 title=f"{paths[0].name}: bicubic and {len(results)} result(s)")
    if not args.quiet:
        print(f"wrote {page}")
    return 0


def add_report_argument(parser: argparse.ArgumentParser) -> None:
    """`--report PAGE` of `realsr upscale`: the comparison page of the inputs and their outputs."""
    parser.add_argument("--report", default=None, metavar="PAGE",
                        help="also write an HTML page comparing each input, upscaled bicubically, with its output "
                        "(as `realsr compare` does; one page for all inputs)")


def write_upscale_page(page: str, inputs, output: str, recursive: bool, fmt: str | None, report, quiet: bool) -> None:
    """The `--report` page of an upscale batch: one section per input whose output exists.

    `report` is the batch's `UpscaleReport`; the time shown per image is the batch's time divided by
    the images upscaled (model loading included), as the summary line prints it.
    """
    from realsr_fast.inference.upscale_files import plan_jobs
    from realsr_fast.io import read_image
    from realsr_fast.report.compare_page import Comparison, Result, write_comparison_page

    written = {Path(path) for path in [*report.done, *report.skipped]}
    seconds = report.seconds / len(report.done) if report.done else None
    comparisons = []
    for job in plan_jobs(inputs, output, recursive, fmt):
        if job.target in written:
            done = job.target in report.done
            result = Result(job.target.name, read_image(job.target), seconds if done else None, job.target)
            comparisons.append(Comparison(job.source.name, read_image(job.source), [result], job.source))
    if not comparisons:
        return
    path = write_comparison_page(page, comparisons, title=f"realsr upscale: {len(comparisons)} image(s) and bicubic",
                                 subtitle="time: the batch's time per image, model loading included")
    if not quiet:
        print(f"wrote {path}")
