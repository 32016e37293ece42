"""benchmarks/gpu_check.py runs end to end on the CPU (--dry-run), so it is known to work before a
GPU is lent; and the build's default GPU architectures carry PTX for newer GPUs."""
from __future__ import annotations

import ast
import importlib.util
import json
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
