"""`realsr train`: the command-line face of `realsr_fast.train.trainer.Trainer`."""
from __future__ import annotations

import argparse

from realsr_fast.commands.arguments import add_offline_argument, apply_offline

DESCRIPTION = """\
Train (or fine-tune) the RealSR ESRGAN generator against a PatchGAN or VGG-128 discriminator,
degrading HR crops on the fly on the training device as the official code does offline (the
image's kernel, 8-bit LR, flips, then real noise). The paper presets start from ESRGAN's PSNR x4
weights (generator.init=esrgan-psnr, fetched on first use) in fp32; what still differs from the
official recipe and how to restore it: docs/OFFICIAL_RECIPE.md.

CONFIG is a YAML preset (configs/realsr_dped.yaml, configs/realsr_df2k.yaml, configs/finetune_df2k.yaml
to adapt the released model, configs/smoke.yaml);
KEY=VALUE arguments override it with dotted names and YAML values. Checkpoints go to
RUN.OUT/checkpoints every run.checkpoint_every iterations, at the end, and on Ctrl-C / SIGTERM
(the step in flight finishes first); --resume continues a run exactly. Each G_N.safetensors loads
in `realsr upscale --model PATH` as it is.

The GAN presets' perceptual loss uses torchvision's ImageNet VGG19 (vgg19-dcbb9e9d.pth, 548 MB):
it is downloaded into the torch hub cache on first use, hash-checked, unless --vgg-weights gives the
file or --offline / REALSR_OFFLINE=1 forbids downloading.

Several GPUs or nodes: start it with torchrun (NCCL on GPUs, gloo on CPUs); data.batch is the
global batch, split over the processes; only rank 0 writes."""

EPILOG = """\
examples:
  realsr train configs/smoke.yaml
  realsr train configs/realsr_dped.yaml data.hr=dped/HR data.kernels=dped/kernels data.noise=dped/noise
  realsr train configs/realsr_dped.yaml loss.mode=psnr loss.pixel_weight=1 generator.init=null
  realsr train configs/realsr_dped.yaml data.hr=... --resume
  torchrun --nproc_per_node=4 -m realsr_fast.cli train configs/realsr_df2k.yaml data.hr=... data.noise=..."""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("train", help="train or fine-tune a RealSR model", description=DESCRIPTION,
                                   epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", metavar="CONFIG", help="YAML preset (see configs/)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, e.g. optim.iterations=1000")
    parser.add_argument("--resume", nargs="?", const="", default=None, metavar="PATH",
                        help="continue from the latest checkpoint of run.out, or from PATH (a run folder "
                        "or a state_N.pt)")
    parser.add_argument("--vgg-weights", metavar="PATH", default=None,
                        help="torchvision's vgg19-dcbb9e9d.pth (default: the torch hub cache, fetched on first "
                        "use); same as loss.vgg_weights=PATH")
    parser.add_argument("-o", "--output", metavar="DIR", default=None,
                        help="the run folder: checkpoints, logs, samples (default: the preset's run.out); same as run.out=DIR")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or notes, only the result")
    add_offline_argument(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from realsr_fast.train.config import load_config
    from realsr_fast.train.distributed import init_distributed, shutdown
    from realsr_fast.train.trainer import Trainer

    apply_offline(args)
    overrides = list(args.overrides)
    if args.vgg_weights is not None:
        overrides.append(f"loss.vgg_weights={args.vgg_weights}")
    if args.output is not None:
        overrides.append(f"run.out={args.output}")
    if args.quiet:
        overrides.append("run.progress=false")
    config = load_config(args.config, overrides)
    context = init_distributed(config.run.device)
    try:
        resume = None if args.resume is None else (args.resume or config.run.out)
        result = Trainer(config, context, resume=resume).train()
    finally:
        shutdown(context)
    return 130 if result.interrupted else 0
