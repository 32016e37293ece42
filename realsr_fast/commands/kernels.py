"""`realsr kernels INPUT_DIR -o OUT_DIR`: estimate every photo's down-scaling kernel with KernelGAN."""
from __future__ import annotations

import argparse
import sys

from realsr_fast.commands.arguments import add_device_argument, add_method_argument, positive_int
from realsr_fast.kernel_estimation import ITERATIONS
from realsr_fast.kernel_estimation.kernelgan import LAMBDA_BICUBIC_START, LAMBDA_BICUBIC_START_REALSR


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "kernels",
        help="estimate each photo's blur kernel (KernelGAN, spectral or blur families)",
        description="Estimate each photo's x2 down-scaling kernel with KernelGAN, the spectral estimator or the "
        "blur families (--method; and x4 analytically), "
        "writing OUT_DIR/<stem>/<stem>_kernel_x2.mat (key 'Kernel', as Real-SR reads), .npy, a quality "
        "report (report.json) and a sheet of all kernels (kernels.png). Resumable; run under torchrun "
        "to share the images among ranks.",
    )
    parser.add_argument("input_dir", help="folder of photos")
    parser.add_argument("-o", "--output", required=True, help="output folder")
    parser.add_argument("--scale", type=int, choices=(2, 4), default=2, help="2, or 4 to add the analytic x4 kernel")
    parser.add_argument("--kernel-iters", type=positive_int, default=ITERATIONS,
                        help="KernelGAN iterations per image (default: %(default)s, the official setting)")
    parser.add_argument("--iters", dest="kernel_iters", type=positive_int, default=argparse.SUPPRESS,
                        help=argparse.SUPPRESS)  # the older name
    parser.add_argument("--seed", type=int, default=0, help="base seed: the same seed gives the same kernels")
    parser.add_argument("--seeds", type=int, default=1,
                        help="runs per image; the most consistent kernel is kept, and from 2 on the report says "
                        "how far the runs agree (seed_agreement_db) and whether to trust the estimate")
    parser.add_argument("--batch", type=positive_int, default=16,
                        help="images trained together (default 16: per-image cost falls with the batch on CPU)")
    parser.add_argument("--bicubic-weight", type=float, choices=(LAMBDA_BICUBIC_START, LAMBDA_BICUBIC_START_REALSR),
                        default=LAMBDA_BICUBIC_START,
                        help=f"starting weight of KernelGAN's bicubic loss: {LAMBDA_BICUBIC_START:g} as upstream KernelGAN "
                        f"(default), {LAMBDA_BICUBIC_START_REALSR:g} as the copy of KernelGAN inside Real-SR's code")
    add_method_argument(parser, kernelgan_flags="--kernel-iters, --seeds, --batch and --bicubic-weight")
    add_device_argument(parser, help="where KernelGAN runs (default: %(default)s)")
    parser.add_argument("--overwrite", action="store_true", help="redo images that already have results")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or notes, only the result")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from realsr_fast.kernel_estimation.estimate import estimate_kernel_folder
    from realsr_fast.kernel_estimation.estimators import KernelSettings

    settings = KernelSettings(method=args.method, scale=args.scale, iterations=args.kernel_iters, seed=args.seed,
                              runs=args.seeds, batch=args.batch, device=args.device, bicubic_weight=args.bicubic_weight)
    summary = estimate_kernel_folder(args.input_dir, args.output, settings, overwrite=args.overwrite,
                                     progress=not args.quiet)
    print(f"realsr kernels: {summary.summary()}", file=sys.stderr)
    return 0 if summary.ok else 1
