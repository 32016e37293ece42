"""The package's code stays in rooms a newcomer can read (docs/ARCHITECTURE.md, "Rules of the house").

- no module over 400 lines;
- no function over 60 lines, except the transcribed official KernelGAN training loop (kept line for
  line beside the official one, so that the two can be read side by side);
- no function over 8 parameters (settings values instead), except the compiled ops' Python wrappers
  in `ops/`, whose parameters are the op schemas' own;
- no choice made by comparing a method's name (`method == "..."`): choices go through a table.
"""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "realsr_fast"
MAX_MODULE_LINES, MAX_FUNCTION_LINES, MAX_PARAMETERS = 400, 60, 8
LONG_FUNCTIONS_ALLOWED = {"kernel_estimation/kernelgan/training.py:train_kernelgan"}


def modules() -> list[Path]:
    return sorted(PACKAGE_DIR.rglob("*.py"))


def functions(path: Path):
    """(name, parameter count without self/cls, line count) of every function in `path`."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args
            names = [a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)]
            count = len(names) - (1 if names and names[0] in ("self", "cls") else 0)
            yield node.name, count, node.end_lineno - node.lineno + 1


def where(path: Path, name: str) -> str:
    return f"{path.relative_to(PACKAGE_DIR).as_posix()}:{name}"


def test_no_module_is_over_400_lines() -> None:
    long = {where(p, ""): n for p in modules() if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES}
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


def test_no_function_is_over_60_lines() -> None:
    long = {where(p, name): n for p in modules() for name, _, n in functions(p)
            if n > MAX_FUNCTION_LINES and where(p, name) not in LONG_FUNCTIONS_ALLOWED}
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_no_function_takes_over_8_parameters() -> None:
    wide = {where(p, name): n for p in modules() if p.parent.name != "ops"
            for name, n, _ in functions(p) if n > MAX_PARAMETERS}
    assert not wide, f"functions over {MAX_PARAMETERS} parameters (use a settings value): {wide}"


def test_no_choice_compares_a_method_name() -> None:
    found = [f"{p.relative_to(PACKAGE_DIR)}:{i}" for p in modules()
             for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if "method ==" in line]
    assert not found, f"`method ==` (use the estimators' table): {found}"


def test_the_checks_see_violations(tmp_path) -> None:
    """The scanner counts what the rules mean (a check that cannot fail is no check)."""
    source = tmp_path / "wide.py"
    body = "\n".join(f"    x{i} = {i}" for i in range(61))
    source.write_text(f"def wide(self, a, b, c, d, e, f, g, h, i):\n{body}\n", encoding="utf-8")
    [(name, parameters, lines)] = list(functions(source))
    assert (name, parameters, lines) == ("wide", 9, 62)
