"""`realsr adapt`: the command-line face of `realsr_fast.adaptation.job.adapt`."""
from __future__ import annotations

import argparse

from realsr_fast.adaptation.settings import AdaptKernels, AdaptNoise, AdaptSettings, AdaptTraining
from realsr_fast.commands.arguments import (
    add_device_argument,
    add_method_argument,
    add_offline_argument,
    apply_offline,
    positive_float,
    positive_int,
)
from realsr_fast.train import FINE_TUNE_PRESETS

DESCRIPTION = """\
Make a model for one camera from a folder of its photos. Whole photos get one of three roles by
a hash of their names: training, validation (chooses the starting model and the checkpoint) and
test (scored once at the end, never used for a choice; none with 2 photos). The training photos
are cleaned into HR (1/2 MATLAB bicubic), their x4 blur kernels estimated (Gaussian, defocus and
motion blurs fitted to each photo's spectrum; --method kernelgan for the paper's) and their noise
collected (flat patches, or a noise model fitted to them); the starting model (--base: df2k, or
Real-ESRGAN x4plus when better on validation) is fine-tuned on HR crops degraded on the fly with
those kernels and that noise (and, for JPEG photos, JPEG at about their quality). Validation and
test LR are made with the training photos' kernels and noise; validation is scored every
val.every iterations (--set val.every=N) and the best model kept; the test photos compare
bicubic, the official model(s) and the adapted one.

Outputs in OUT: model.safetensors (load it with `realsr upscale --model OUT/model.safetensors`),
report.html (learning curve, before/after sliders on held-out photos, kernels and noise),
summary.json, curve.png, and the cached stages (hr/, kernels/, noise/, split/, run/). Running the
same command again resumes: finished stages are not redone and training continues from its last
checkpoint up to the new budget (--minutes counts training + validation over all runs).

What a run costs (RRDBNet 16.7 M parameters, PSNR mode; measured numbers in docs/adapt.md):
  CPU (the preset: 48 px crops x 2, lr 1e-4): seconds per step on a small CPU, fewest with
    --threads 1 on a shared machine (threads spin-wait for each other under load); the time per
    step and how soon held-out photos gain are in docs/adapt.md. Validation adds its time per
    held-out photo; kernel estimation its own per photo (KernelGAN: --kernel-iters).
  GPU (the paper's 128 px crops x 16, bf16): a target of several iterations per second, i.e.
    thousands of iterations in 15 minutes; NOT measured yet."""

DEFAULTS = AdaptSettings()

EPILOG = """\
examples:
  realsr adapt photos/ -o my_camera/ --minutes 15
  realsr adapt photos/ -o my_camera/ --minutes 30          # continues the run above for 15 more
  realsr adapt photos/ -o my_camera/ --mode gan --iterations 5000 --device cuda
  realsr upscale photo.jpg -o big.png --model my_camera/model.safetensors"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("adapt", help="fine-tune a model for one camera's photos", description=DESCRIPTION,
                                   epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("photos", metavar="PHOTOS", help="folder of one camera's photos (never written)")
    parser.add_argument("-o", "--output", dest="out", required=True, metavar="OUT",
                        help="output folder (re-running resumes)")
    parser.add_argument("--mode", choices=tuple(FINE_TUNE_PRESETS), default=DEFAULTS.training.mode,
                        help="psnr: L1 alone; gan: L1 + VGG + RaGAN with the paper's weights (default: %(default)s)")
    parser.add_argument("--minutes", type=positive_float, default=DEFAULTS.training.minutes,
                        help="wall-clock budget of training + validation (default: none)")
    parser.add_argument("--iterations", type=positive_int, default=DEFAULTS.training.iterations,
                        help="iteration budget (default: the preset's optim.iterations)")
    parser.add_argument("--held-out", type=positive_float, default=DEFAULTS.held_out, metavar="FRACTION",
                        help="fraction of photos kept for validation and as many for test, at least one each with "
                        "3 or more photos (default: %(default)s)")
    parser.add_argument("--kernels", metavar="DIR", default=None, help="use these kernels instead of running KernelGAN")
    parser.add_argument("--noise", metavar="DIR", default=None, help="use these noise patches instead of mining them")
    parser.add_argument("--kernel-iters", type=positive_int, default=DEFAULTS.kernels.iterations,
                        help="KernelGAN iterations per photo (default: %(default)s, the official setting)")
    parser.add_argument("--seeds", type=positive_int, default=DEFAULTS.kernels.seeds,
                        help="KernelGAN runs per photo (default: %(default)s); with 2 or more, a photo whose runs "
                        "disagree (seed agreement below the trust threshold) is not trained on with its estimate "
                        "but with a constant isotropic Gaussian kernel (docs/adapt.md); costs that many times "
                        "KernelGAN's time; cached estimates are reused as they are")
    add_method_argument(parser, kernelgan_flags="--kernel-iters and --seeds", default=DEFAULTS.kernels.method)
    parser.add_argument("--noise-patch", type=positive_int, default=DEFAULTS.noise.patch,
                        help="side of mined noise patches (default: the largest of 256/128/64/32 that finds enough "
                        "flat patches in the training photos; without any, a noise model fitted to them, docs/adapt.md)")
    parser.add_argument("--base", default=DEFAULTS.base, metavar="auto|df2k|realesrgan-x4plus|PATH",
                        help="starting model (default: auto, the better of df2k and realesrgan-x4plus on the "
                        "validation photos when the realesrgan extra is installed, else df2k)")
    parser.add_argument("--already-clean", action="store_true",
                        help="PHOTOS are clean HR images already: skip the 1/2 clean-up")
    parser.add_argument("--config", metavar="YAML", default=None,
                        help="a training preset instead of configs/adapt.yaml (adapt_gan.yaml in GAN mode)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="dotted training override, e.g. --set optim.lr_g=1e-4 (repeatable)")
    parser.add_argument("--seed", type=int, default=DEFAULTS.seed,
                        help="seed of the split, KernelGAN and training (default: %(default)s)")
    parser.add_argument("--threads", type=positive_int, default=None,
                        help="torch CPU threads (default: torch's); 1 on a CPU shared with other jobs, where two "
                        "threads spin-waiting for each other slow a training step (docs/adapt.md)")
    add_device_argument(parser)
    add_offline_argument(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bars or notes, only the result")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from realsr_fast.adaptation.job import adapt

    apply_offline(args)
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    settings = AdaptSettings(
        kernels=AdaptKernels(args.kernels, args.method, args.kernel_iters, args.seeds),
        noise=AdaptNoise(args.noise, args.noise_patch),
        training=AdaptTraining(args.mode, args.minutes, args.iterations, args.config, tuple(args.overrides)),
        held_out=args.held_out, base=args.base, clean=not args.already_clean, device=args.device, seed=args.seed,
        progress=not args.quiet)
    result = adapt(args.photos, args.out, settings)
    from realsr_fast.adaptation.report import test_line

    print(f"{test_line(result.test)}; base {result.base.chosen}; model {result.model}, report {result.report}")
    return 130 if result.fine_tune.interrupted else 0
