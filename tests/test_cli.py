"""The `realsr` entry point: version, help, and how errors reach the user."""
from __future__ import annotations

import subprocess
import sys

import pytest

from realsr_fast import __version__, cli


def run_realsr(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "realsr_fast.cli", *args], capture_output=True, text=True)


def test_version():
    result = run_realsr("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"realsr_fast {__version__}"


def test_help_lists_every_verb():
    result = run_realsr("--help")
    assert result.returncode == 0
    for verb in cli.VERBS:
        assert verb in result.stdout


def test_no_verb_prints_help_and_fails(capsys):
    assert cli.main([]) == 2
    assert "usage: realsr" in capsys.readouterr().out


def test_user_error_is_one_line_without_traceback(tmp_path):
    result = run_realsr("upscale", str(tmp_path / "missing.png"), "-o", str(tmp_path / "out.png"))
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "missing.png" in result.stderr


def test_unknown_verb_is_an_argparse_error():
    with pytest.raises(SystemExit) as exc:
        cli.main(["frobnicate"])
    assert exc.value.code == 2
