"""benchmarks/gpu_check.py runs end to end on the CPU (--dry-run), so it is known to work before a
GPU is lent, after an editable or a plain `pip install .`; and the build's default GPU architectures
carry PTX for newer GPUs."""
from __future__ import annotations

import ast
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_dry_run_exercises_every_stage(tmp_path, monkeypatch):
    monkeypatch.setenv("REALSR_FAST_HOME", str(tmp_path / "home"))  # converted weights go here, not ~/.cache
    gpu_check = _gpu_check()
    assert gpu_check.main(["--dry-run", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    stages = report["stages"]
    assert list(stages) == [name for name, _ in gpu_check.STAGES]
    assert {name: s["status"] for name, s in stages.items()} == {name: "ok" for name in stages}
    ops = stages["ops"]["result"]
    assert set(ops) == {"degrade: training batch", "degrade: big job", "patch_stats", "batchnorm_relu",
                        "correlation_kernel_grad"}
    assert all(row["speedup"] > 0 and row["max_difference"] < 1e-2 for row in ops.values())
    assert stages["upscaler"]["result"]["psnr_bf16_vs_fp32_db"] > 30
    assert stages["tensorrt"]["result"]["psnr_onnxruntime_vs_torch_fp32_db"] > 45
    assert 0 < stages["train_step"]["result"]["degrade_share"] < 1
    table = (tmp_path / "gpu_check.md").read_text()
    assert all(f"| {name} | ok" in table for name in stages)


def test_default_arch_list_ends_with_ptx():
    """Builds made without a visible GPU must carry PTX for the newest listed arch, or GPUs newer than
    it (sm_100, sm_120) have no kernel image."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    value = next(node.value.value for node in ast.walk(tree) if isinstance(node, ast.Assign)
                 and any(getattr(t, "id", None) == "DEFAULT_ARCHS" for t in node.targets))
    archs = value.replace(" ", ";").split(";")
    newest = max(archs, key=lambda a: float(a.removesuffix("+PTX")))
    assert newest.endswith("+PTX"), archs


# `python benchmarks/gpu_check.py ARGS` as after a plain install: the script's folder first on sys.path,
# and no editable-install finder (this test venv's would load the real checkout's `_C` for any
# `realsr_fast.*` the path misses, hiding the failure).
PLAIN_INSTALL_LAUNCHER = """
import runpy, sys
sys.meta_path[:] = [f for f in sys.meta_path if not getattr(f, "__module__", "").startswith("__editable__")]
sys.argv[0] = "benchmarks/gpu_check.py"
sys.path[0] = "benchmarks"
runpy.run_path("benchmarks/gpu_check.py", run_name="__main__")
"""


def _checkout_and_install(tmp_path: Path, checkout_has_ops: bool) -> tuple[Path, Path]:
    """A copy of this checkout's script and package sources (no `_C` unless `checkout_has_ops`) and an
    "installed" package (site/realsr_fast, the real one with its `_C`), as `pip install .` leaves them."""
    import realsr_fast._C as compiled

    package = Path(compiled.__file__).parent
    checkout, site = tmp_path / "checkout", tmp_path / "site"
    (checkout / "benchmarks").mkdir(parents=True)
    shutil.copy2(ROOT / "benchmarks" / "gpu_check.py", checkout / "benchmarks")
    shutil.copytree(package, checkout / "realsr_fast",
                    ignore=shutil.ignore_patterns("_C*", "__pycache__", "samples", "*.pt"))
    if checkout_has_ops:
        (checkout / "realsr_fast" / Path(compiled.__file__).name).symlink_to(compiled.__file__)
    site.mkdir()
    (site / "realsr_fast").symlink_to(package, target_is_directory=True)
    return checkout, site


@pytest.mark.parametrize("checkout_has_ops", [False, True], ids=["plain install", "editable or in-place build"])
def test_checks_the_package_that_has_the_compiled_ops(tmp_path, checkout_has_ops):
    """Run as `python benchmarks/gpu_check.py` from the checkout: after a plain `pip install .` the
    checkout's realsr_fast has no `_C`, so the installed package must be the one imported (it used to
    put the checkout first on sys.path and fail to load the ops); with `_C` in the checkout, the checkout's."""
    checkout, site = _checkout_and_install(tmp_path, checkout_has_ops)
    result = subprocess.run([sys.executable, "-c", PLAIN_INSTALL_LAUNCHER, "--dry-run", "--only", "build", "--out",
                             str(tmp_path / "out")], cwd=checkout, env={**os.environ, "PYTHONPATH": str(site)},
                            capture_output=True, text=True, timeout=300, check=False)
    report = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert report["stages"]["build"]["status"] == "ok", report["stages"]["build"]
    assert result.returncode == 0, result.stderr[-3000:]
    want = checkout / "realsr_fast" if checkout_has_ops else site / "realsr_fast"
    assert Path(report["package"]) == want.resolve()
