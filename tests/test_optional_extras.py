"""Without an optional extra, the feature that needs it says in one line which extra to install."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from realsr_fast.errors import RealSRError
from realsr_fast.models.rrdbnet import RRDBNet

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def without(monkeypatch):
    """Make `import NAME` fail as if the package were not installed."""
    def hide(*names: str) -> None:
        for name in names:
            monkeypatch.setitem(sys.modules, name, None)
    return hide


def test_onnx_export_names_the_onnx_extra(without, tmp_path):
    from realsr_fast.export.onnx_export import export_onnx

    without("onnx")
    model = RRDBNet(nf=4, nb=1, gc=4).eval()
    with pytest.raises(RealSRError, match=r"pip install 'realsr_fast\[onnx\]'") as info:
        export_onnx(model, tmp_path / "m.onnx")
    assert "\n" not in str(info.value)
    assert not list(tmp_path.iterdir())


def test_onnx_runtime_backend_names_the_onnx_extra(without, tmp_path):
    from realsr_fast.inference.onnx_runner import OnnxRunner

    without("onnxruntime")
    with pytest.raises(RealSRError, match=r"ONNX Runtime backend needs .*realsr_fast\[onnx\]"):
        OnnxRunner(tmp_path / "m.onnx", torch.device("cpu"))


def test_ncnn_backend_names_the_ncnn_extra_and_auto_does_without(without, monkeypatch):
    from realsr_fast.inference import auto_choice
    from realsr_fast.inference.backends import UpscalerSettings
    from realsr_fast.inference.upscaler import Upscaler

    without("ncnn")
    with pytest.raises(RealSRError, match=r"ncnn backend needs .*realsr_fast\[ncnn\]"):
        Upscaler("df2k", device="cpu", backend="ncnn")
    monkeypatch.setattr(auto_choice, "cpu_has_native_bf16", lambda: False)
    monkeypatch.setattr(auto_choice, "cpu_isa", lambda: "baseline")  # a CPU where ncnn would be chosen
    choice = auto_choice.choose(UpscalerSettings("df2k", "cpu", backend="auto"), torch.device("cpu"))
    assert (choice.backend, choice.precision) == ("torch", "fp32") and "realsr_fast[ncnn]" in choice.reason


def test_tensorrt_names_the_tensorrt_extra(without):
    from realsr_fast.export.tensorrt_build import import_tensorrt

    without("tensorrt")
    with pytest.raises(RealSRError, match=r"realsr_fast\[tensorrt\]"):
        import_tensorrt()


def test_core_modules_import_without_any_extra():
    """Every module a plain `pip install .` gives imports with the extras (and test tools) absent."""
    script = """
import importlib, pkgutil, sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"onnx", "onnxruntime", "tensorrt", "tensorboard", "ncnn", "skimage",
                                  "pytest", "playwright", "matplotlib", "av"}:
            raise ImportError(f"{name} hidden by the test")
sys.meta_path.insert(0, Block())
import torch  # realsr_fast._C links to libc10, which torch loads
import realsr_fast
for module in pkgutil.walk_packages(realsr_fast.__path__, "realsr_fast."):
    importlib.import_module(module.name)
print("imported", len(sys.modules))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]


def test_every_backend_extra_is_in_pyproject():
    """`Backend.extra` (named in `--backend`'s help) is an optional-dependency group of pyproject.toml."""
    import tomllib

    from realsr_fast.inference.backends import BACKENDS

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert {backend.extra for backend in BACKENDS.values() if backend.extra} <= set(extras)
