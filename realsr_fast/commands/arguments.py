"""What the verbs share: number types with a range (argparse's error messages) and the
`--device` / `--model` / `--offline` options."""
from __future__ import annotations

import argparse
import math
import os

from realsr_fast.download import OFFLINE_ENV
from realsr_fast.kernel_estimation.estimators import ESTIMATORS
from realsr_fast.models import DEFAULT_MODEL


def add_offline_argument(parser: argparse.ArgumentParser) -> None:
    """`--offline`: never download pretrained weights (same as REALSR_OFFLINE=1)."""
    parser.add_argument("--offline", action="store_true",
                        help=f"never download pretrained weights; a missing file is an error naming it and "
                        f"where to put it (same as {OFFLINE_ENV}=1)")


def apply_offline(args: argparse.Namespace) -> None:
    """Turn `--offline` into REALSR_OFFLINE=1 for this process and the workers it starts."""
    if getattr(args, "offline", False):
        os.environ[OFFLINE_ENV] = "1"


def positive_int(text: str) -> int:
    """A whole number >= 1."""
    return _number(text, int, low=1)


def non_negative_int(text: str) -> int:
    """A whole number >= 0."""
    return _number(text, int, low=0)


def positive_float(text: str) -> float:
    """A finite number > 0."""
    value = _number(text, float, low=0)
    if value == 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return value


def finite_float(text: str) -> float:
    """Any finite number."""
    return _number(text, float)


def fraction(text: str) -> float:
    """A number in [0, 1]."""
    return _number(text, float, low=0, high=1)


def _number(text: str, kind: type, low: float | None = None, high: float | None = None):
    try:
        value = kind(text)
    except ValueError:
        noun = "a whole number" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"expected {noun}, got {text!r}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    if low is not None and value < low:
        raise argparse.ArgumentTypeError(f"must be at least {low:g}, got {value:g}")
    if high is not None and value > high:
        raise argparse.ArgumentTypeError(f"must be at most {high:g}, got {value:g}")
    return value


DEVICES = ("auto", "cpu", "cuda")


def add_device_argument(parser: argparse.ArgumentParser,
                        help: str = "auto picks CUDA when present (default: %(default)s)") -> None:
    """`--device auto|cpu|cuda`, default auto."""
    parser.add_argument("--device", default="auto", choices=DEVICES, help=help)


def add_method_argument(parser: argparse.ArgumentParser, kernelgan_flags: str, default: str = "kernelgan") -> None:
    """`--method NAME`: how each photo's kernel is estimated, a name of `kernel_estimation.estimators.ESTIMATORS`;
    `kernelgan_flags` names this verb's KernelGAN-only options for the help ("--kernel-iters and --seeds")."""
    parser.add_argument("--method", choices=tuple(ESTIMATORS), default=default,
                        help="; ".join(f"{name}: {entry.summary}" for name, entry in ESTIMATORS.items())
                        + f"; default {default}; {kernelgan_flags} are KernelGAN's")


def check_model(model: str) -> None:
    """UsageError (exit 2, one line) when `model` is neither a named model nor an existing file."""
    from realsr_fast.errors import UsageError
    from realsr_fast.models.zoo import is_model, unknown_model_message

    if not is_model(model):
        raise UsageError(unknown_model_message(model))


def add_model_argument(parser: argparse.ArgumentParser,
                       help: str = "a named model or a weights file (default: %(default)s)") -> None:
    """`--model NAME|PATH`, default the package's default model."""
    parser.add_argument("--model", default=DEFAULT_MODEL, metavar=f"{DEFAULT_MODEL}|PATH", help=help)
