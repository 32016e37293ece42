"""Every error of the shared argument types (commands/arguments.py), as a user meets it: exit 2 and
argparse's one line naming the option and the rule."""
from __future__ import annotations

import pytest

from realsr_fast import cli

CASES = [
    (["cleanup", "d", "-o", "o", "--multiple", "four"], "argument --multiple: expected a whole number, got 'four'"),
    (["kernels", "d", "-o", "o", "--batch", "1.5"], "argument --batch: expected a whole number, got '1.5'"),
    (["upscale", "x.png", "--tile", "0"], "argument --tile: must be at least 1, got 0"),
    (["eval", "--sr", "a", "--gt", "b", "--crop-border", "-1"], "argument --crop-border: must be at least 0, got -1"),
    (["dataset", "--seed", "-3"], "argument --seed: must be at least 0, got -3"),
    (["cleanup", "d", "-o", "o", "--factor", "0"], "argument --factor: must be more than 0"),
    (["cleanup", "d", "-o", "o", "--factor", "-2"], "argument --factor: must be at least 0, got -2"),
    (["cleanup", "d", "-o", "o", "--factor", "two"], "argument --factor: expected a number, got 'two'"),
    (["noise", "d", "-o", "o", "--max-var", "nan"], "argument --max-var: expected a finite number, got 'nan'"),
    (["noise", "d", "-o", "o", "--min-mean", "inf"], "argument --min-mean: expected a finite number, got 'inf'"),
    (["noise", "d", "-o", "o", "--max-overlap", "1.5"], "argument --max-overlap: must be at most 1, got 1.5"),
    (["noise", "d", "-o", "o", "--max-overlap", "-0.1"], "argument --max-overlap: must be at least 0, got -0.1"),
    (["noise", "d", "-o", "o", "--patch", "0"], "argument --patch: must be at least 1, got 0"),
    (["demo", "--kernel-iters", "0"], "argument --kernel-iters: must be at least 1, got 0"),
    (["kernels", "d", "-o", "o", "--iters", "0"], "argument --iters: must be at least 1, got 0"),
    (["export", "onnx", "-o", "m.onnx", "--opset", "16"], "argument --opset: opset must be 17 or newer, got 16"),
    (["export", "tensorrt", "-o", "m.engine", "--max", "0"], "argument --max: must be at least 1, got 0"),
]


@pytest.mark.parametrize("argv,message", CASES, ids=[" ".join(argv[:1] + argv[-2:]) for argv, _ in CASES])
def test_bad_values_are_argparse_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
