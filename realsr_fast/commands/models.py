"""`realsr models`: the named models and where each one comes from."""
from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "models",
        help="list the named models and where each comes from",
        description="List the models that `realsr upscale --model NAME` (and every other verb's model option) "
        "accepts. Some ship with installed Python packages (df2k with realsr_fast itself, realesrgan-x4plus "
        "with the `realesrgan` extra); others are downloaded on first use, hash-checked (REALSR_OFFLINE=1 "
        "forbids it). "
        "Models in ncnn form are converted once into the cache folder ($REALSR_FAST_HOME, default "
        "~/.cache/realsr_fast). Any other weights file can be given by path: ncnn .param/.bin, "
        "ESRGAN / Real-SR / Real-ESRGAN .pth, or .safetensors.",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from realsr_fast.models import DEFAULT_MODEL
    from realsr_fast.models.zoo import MODELS, CheckpointSpec, cache_dir  # imports torch

    for name, spec in MODELS.items():
        default = " (default)" if name == DEFAULT_MODEL else ""
        print(f"{name}{default}: {spec.description}")
        print(f"  from:   {spec.source()}")
        print(f"  origin: {spec.origin}")
        if not isinstance(spec, CheckpointSpec):
            cached = cache_dir() / "models" / spec.cache_name
            print(f"  cache:  {cached}{'' if cached.is_file() else ' (converted on first use)'}")
    return 0
