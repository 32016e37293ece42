"""The `realsr` command: a thin layer of verbs over library functions of the same name.

Each verb lives in `realsr_fast/commands/<verb>.py` and provides `add_parser(subparsers)`,
which registers its sub-parser and sets `func` to a callable taking the parsed arguments and
returning the exit code.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import sys
from typing import Iterator, Sequence

from realsr_fast import __version__
from realsr_fast.errors import RealSRError, UsageError

# Module names under realsr_fast.commands, in the order `--help` lists them.
VERBS: tuple[str, ...] = ("upscale", "compare", "models", "eval", "kernels", "cleanup", "noise", "dataset", "train", "adapt", "demo",
                         "export")


def _verbs_to_load(argv: Sequence[str]) -> tuple[str, ...]:
    """Only the verb being run is imported (its module may pull in torch); help loads them all."""
    for arg in argv:
        if arg in VERBS:
            return (arg,)
        if not arg.startswith("-"):
            break
    return () if list(argv) == ["--version"] else VERBS


def build_parser(verbs: Sequence[str] = VERBS) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="realsr",
        description="Real-world super-resolution (RealSR), fast: degrade, estimate kernels, "
        "mine noise, train and upscale.",
        epilog="Run `realsr VERB --help` for the options of one verb.",
    )
    parser.add_argument("--version", action="version", version=f"realsr_fast {__version__}")
    subparsers = parser.add_subparsers(dest="verb", metavar="VERB")
    for verb in verbs:
        importlib.import_module(f"realsr_fast.commands.{verb}").add_parser(subparsers)
    return parser


@contextlib.contextmanager
def notes_shown(shown: bool) -> Iterator[None]:
    """realsr_fast's notes (log warnings: the automatic choice, fallbacks) shown or not inside the
    block (every verb's `--quiet`); errors always are. The level is restored after."""
    package = logging.getLogger("realsr_fast")
    level = package.level
    if not shown:
        package.setLevel(logging.ERROR)
    try:
        yield
    finally:
        package.setLevel(level)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_verbs_to_load(argv))
    args = parser.parse_args(argv)
    if args.verb is None:
        parser.print_help()
        return 2
    try:
        with notes_shown(not getattr(args, "quiet", False)):
            return int(args.func(args) or 0)
    except UsageError as exc:
        print(f"realsr {args.verb}: error: {exc}", file=sys.stderr)
        return 2
    except RealSRError as exc:
        print(f"realsr {args.verb}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"realsr {args.verb}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
