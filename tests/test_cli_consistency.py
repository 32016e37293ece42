"""One command line: every verb that writes files takes -o/--output, every verb with a progress bar
takes --quiet, options mean the same under the same name across verbs, and each `--help` mentions
only options the verb has (references to another verb, `realsr VERB ...` in backticks, aside)."""
from __future__ import annotations

import argparse
import re

import pytest

from realsr_fast import cli

#: Verbs that write nothing (they print).
NO_OUTPUT = {"models"}
#: Verbs without a progress bar.
NO_PROGRESS = {"models", "export"}
#: The same thing under one name everywhere.
SHARED = {"--kernel-iters": {"kernels", "adapt", "demo"}, "--model": {"upscale"}, "--device": {"kernels", "adapt", "demo", "upscale"}}


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = cli.build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


VERBS = _subparsers()


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return {option for action in parser._actions for option in action.option_strings}


@pytest.mark.parametrize("verb", sorted(set(VERBS) - NO_OUTPUT))
def test_output_is_dash_o(verb) -> None:
    assert {"-o", "--output"} <= _options(VERBS[verb])


@pytest.mark.parametrize("verb", sorted(set(VERBS) - NO_PROGRESS))
def test_quiet_where_there_is_progress(verb) -> None:
    assert "--quiet" in _options(VERBS[verb])


@pytest.mark.parametrize("option", sorted(SHARED))
def test_shared_names(option) -> None:
    for verb in SHARED[option]:
        assert option in _options(VERBS[verb]), (verb, option)


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_help_mentions_only_own_options(verb) -> None:
    text = VERBS[verb].format_help()
    text = re.sub(r"`realsr (?!" + re.escape(verb) + r"\b)[^`]*`", "", text)  # another verb's command
    text = re.sub(r"(?m)^\s*realsr (?!" + re.escape(verb) + r"\b).*$", "", text)  # another verb's example
    text = re.sub(r"(?m)^\s*(torchrun|PYTHONPATH)\b.*$", "", text)
    mentioned = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", text))
    assert mentioned - _options(VERBS[verb]) == set()


@pytest.mark.parametrize("argv,dest,value", [
    (["kernels", "d", "-o", "o", "--iters", "7"], "kernel_iters", 7),      # the older name, still accepted
    (["demo", "--iters", "7"], "kernel_iters", 7),
    (["adapt", "p", "--out", "o"], "out", "o"),                           # --out: a prefix of --output
])
def test_older_names_still_parse(argv, dest, value) -> None:
    assert getattr(cli.build_parser([argv[0]]).parse_args(argv), dest) == value


def test_eval_output_needs_json_or_csv(tmp_path, capsys) -> None:
    assert cli.main(["eval", "--sr", str(tmp_path), "--gt", str(tmp_path), "-o", str(tmp_path / "scores.txt")]) == 2
    err = capsys.readouterr().err.strip()
    assert "name a .json or .csv file" in err and len(err.splitlines()) == 1
