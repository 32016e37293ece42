"""`realsr demo`: the command-line face of `realsr_fast.demo.pipeline.run_demo`."""
from __future__ import annotations

import argparse

from realsr_fast.commands.arguments import add_device_argument, non_negative_int, positive_int
from realsr_fast.demo import ADAPT_ITERATIONS, DEMO_ITERATIONS

DESCRIPTION = f"""\
Run the whole RealSR pipeline on the bundled sample photos, in a few minutes on a CPU: estimate
their blur kernels with KernelGAN ({DEMO_ITERATIONS} iterations, the official setting), mine their flat regions for real noise (32 px patches), degrade them into
LR = (HR * k)↓4 + n (the paper's recipe) and LR = bicubic↓4 + n (what the DF2K model was trained
on), upscale the LR with the official RealSR DF2K model and with bicubic, and score both against
the HR (PSNR / SSIM on Y). Then, as a third column, the official model fine-tuned for these photos
(`realsr adapt`'s recipe, --adapt-iterations; its time on a CPU in docs/adapt.md) on three of
them, shown and scored on the fourth, held out.

Writes DIR/report.html, a single self-contained page (open it in any browser) with the kernels,
the noise patches, LR / bicubic / RealSR / HR side by side, the metrics and the time of every
stage, plus what each stage made: DIR/kernels, DIR/noise, DIR/pairs, DIR/sr, DIR/adapt,
DIR/summary.json.
Nothing is downloaded."""

EPILOG = """\
examples:
  realsr demo
  realsr demo -o /tmp/realsr_demo --kernel-iters 300      # quicker, rougher kernels
  realsr demo --adapt-iterations 0                 # no adapted model (quicker)"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="run the whole pipeline on the sample photos and write an HTML report",
        description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-o", "--output", default="realsr_demo", metavar="DIR",
                        help="output folder (default: %(default)s)")
    parser.add_argument("--kernel-iters", type=positive_int, default=DEMO_ITERATIONS,
                        help="KernelGAN iterations per photo (default: %(default)s; official 3000)")
    parser.add_argument("--iters", dest="kernel_iters", type=positive_int, default=argparse.SUPPRESS,
                        help=argparse.SUPPRESS)  # the older name
    parser.add_argument("--adapt-iterations", type=non_negative_int, default=ADAPT_ITERATIONS, metavar="N",
                        help="fine-tuning iterations of the adapted model (time per iteration: docs/adapt.md); 0: no "
                        "adapted column (default: %(default)s)")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="random seed (default: %(default)s)")
    add_device_argument(parser, help="where KernelGAN and the model run (default: %(default)s)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or notes, only the result")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from realsr_fast.demo.pipeline import run_demo
    from realsr_fast.demo.records import ADAPTED_RECIPE, METHOD_TITLES

    result = run_demo(args.output, iterations=args.kernel_iters, seed=args.seed, device=args.device,
                      progress=not args.quiet, adapt_iterations=args.adapt_iterations)
    for recipe, by_method in result.evaluations.items():
        for method, evaluation in by_method.items():
            mean = evaluation.mean
            print(f"LR {recipe:<13} {METHOD_TITLES[method]:>10}: PSNR-Y {mean['psnr_y']:.2f} dB, "
                  f"SSIM-Y {mean['ssim_y']:.4f} (mean)")
    if result.adapted is not None:
        for method, evaluation in result.held_out_evaluations.items():
            mean = evaluation.mean
            print(f"held out ({', '.join(result.adapted.held_out)}), LR {ADAPTED_RECIPE} {METHOD_TITLES[method]:>10}: "
                  f"PSNR-Y {mean['psnr_y']:.2f} dB, SSIM-Y {mean['ssim_y']:.4f}")
    print(f"total {sum(t.seconds for t in result.timings):.0f} s; report: {result.report}")
    return 0
