"""`realsr --help` and every `realsr VERB --help` parse without importing torch (#32 point 4).

Each check runs in a fresh interpreter, since the test process has torch loaded already. The help's
choices and defaults come from light modules (`models`, `tiling`, `inference.backends`,
`image_formats`, `kernel_estimation` (and its `estimators` table), `demo`, `data.noise_settings`, ...); the verbs import the heavy ones
inside their `run`.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import time

import pytest

from realsr_fast.cli import VERBS

HEAVY = ("torch", "numpy", "PIL")

PROBE = """\
import sys
from realsr_fast.cli import main
try:
    main({argv!r})
except SystemExit:
    pass
print("loaded:", *[name for name in {heavy!r} if name in sys.modules])
"""


def loaded_after(argv: list[str]) -> list[str]:
    """The heavy packages in sys.modules after `realsr ARGV` has printed its help."""
    result = subprocess.run([sys.executable, "-c", PROBE.format(argv=argv, heavy=HEAVY)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "usage: realsr" in result.stdout
    return result.stdout.strip().splitlines()[-1].split()[1:]


@pytest.mark.parametrize("argv", [["--help"], *([verb, "--help"] for verb in VERBS)], ids=lambda a: " ".join(a))
def test_help_imports_no_torch(argv):
    assert "torch" not in loaded_after(argv)


def test_top_level_help_imports_no_numpy_or_pillow():
    assert loaded_after(["--help"]) == []


def test_python_m_realsr_fast_help_imports_no_torch():
    probe = ("import runpy, sys; sys.argv = ['realsr', '--help']\n"
             "try:\n    runpy.run_module('realsr_fast', run_name='__main__')\nexcept SystemExit:\n    pass\n"
             "print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "False"


@pytest.mark.skipif(shutil.which("realsr") is None, reason="the realsr script is not installed")
def test_help_is_quick():
    """About 0.2-0.3 s on the 2 shared cores of the development machine (docs/ARCHITECTURE.md); the
    bound is generous so that a loaded machine does not fail it."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        subprocess.run(["realsr", "--help"], capture_output=True, check=True, timeout=60)
        best = min(best, time.perf_counter() - start)
    assert best < 1.5, f"realsr --help took {best:.2f} s"
