"""`realsr models`: the named models and where each one comes from."""
from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "models",
        help="list the named models and where each comes from",
        description="List the models that `--model NAME` accepts. They ship with installed "
        "Python packages (nothing is downloaded) and are converted once into the cache folder "
        "($REALSR_FAST_HOME, default ~/.cache/realsr_fast). Any other weights file can be "
        "given by path: ncnn .param/.bin, ESRGAN / Real-SR / Real-ESRGAN .pth, or .safetensors.",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from realsr_fast.models import DEFAULT_MODEL
    from realsr_fast.models.zoo import MODELS, cache_dir  # imports torch

    for name, spec in MODELS.items():
        default = " (default)" if name == DEFAULT_MODEL else ""
        cached = cache_dir() / "models" / spec.cache_name
        print(f"{name}{default}: {spec.description}")
        print(f"  from:   {spec.source()}")
        print(f"  origin: {spec.origin}")
        print(f"  cache:  {cached}{'' if cached.is_file() else ' (converted on first use)'}")
    return 0
