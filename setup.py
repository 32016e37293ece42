"""Builds realsr_fast and its compiled ops `realsr_fast._C` against the installed torch.

C++ CPU kernels are always built; CUDA kernels too when torch has CUDA and nvcc is found.
Environment:
  REALSR_FAST_CUDA=0|1     force the CUDA objects off / on (default: auto)
  TORCH_CUDA_ARCH_LIST     GPU architectures (default when no GPU is visible: 8.0 8.6 8.9 9.0+PTX;
                           the PTX lets newer GPUs (sm_100, sm_120) JIT-compile the kernels)
  CUDA_HOME                CUDA toolkit (default: /usr/local/cuda when it exists)
Build with `pip install --no-build-isolation .` so the installed torch is the one compiled against.
"""
from __future__ import annotations

import glob
import os
import sys

from setuptools import setup

try:
    import torch
except ImportError:  # pragma: no cover - depends on the build environment
    sys.exit(
        "realsr_fast builds its ops against the installed PyTorch, which was not found.\n"
        "Install torch first, then build without isolation:\n"
        "  pip install torch && pip install --no-build-isolation ."
    )

if "CUDA_HOME" not in os.environ and os.path.isdir("/usr/local/cuda"):
    # torch guesses CUDA_HOME from `which nvcc`, which is wrong when nvcc is a symlink elsewhere.
    os.environ["CUDA_HOME"] = "/usr/local/cuda"

from torch.utils import cpp_extension  # noqa: E402  (reads CUDA_HOME at import)

DEFAULT_ARCHS = "8.0;8.6;8.9;9.0+PTX"
CPU_SOURCES = ["csrc/ops.cpp", "csrc/op_args.cpp", "csrc/python_module.cpp", *sorted(glob.glob("csrc/cpu/*.cpp"))]
CUDA_SOURCES = sorted(glob.glob("csrc/cuda/*.cu")) + sorted(glob.glob("csrc/cuda/*.cpp"))


def want_cuda() -> bool:
    """Decides whether to compile the CUDA objects, saying why on one line."""
    forced = os.environ.get("REALSR_FAST_CUDA")
    available = torch.version.cuda is not None and cpp_extension.CUDA_HOME is not None
    nvcc = cpp_extension.CUDA_HOME and os.path.exists(os.path.join(cpp_extension.CUDA_HOME, "bin", "nvcc"))
    if forced == "0":
        print("realsr_fast: REALSR_FAST_CUDA=0, building the CPU ops only")
        return False
    if available and nvcc:
        return True
    reason = "torch has no CUDA" if torch.version.cuda is None else "nvcc was not found (set CUDA_HOME)"
    if forced == "1":
        sys.exit(f"realsr_fast: REALSR_FAST_CUDA=1 but {reason}")
    print(f"realsr_fast: {reason}; building the CPU ops only (CUDA ops unavailable)")
    return False


def nvidia_include_dirs() -> list[str]:
    """Headers of the pip `nvidia-*` packages (cusparse.h etc.), which ATen's CUDA headers include."""
    try:
        import nvidia
    except ImportError:
        return []
    return sorted({os.path.dirname(h) for root in nvidia.__path__ for h in glob.glob(os.path.join(root, "*", "include", "cusparse.h"))})


def extension():
    cxx_flags = ["-O3", "-fopenmp"]
    if want_cuda():
        if not os.environ.get("TORCH_CUDA_ARCH_LIST") and not torch.cuda.is_available():
            os.environ["TORCH_CUDA_ARCH_LIST"] = DEFAULT_ARCHS
        print(f"realsr_fast: building CPU + CUDA ops for sm {os.environ.get('TORCH_CUDA_ARCH_LIST', 'of the visible GPU')}")
        return cpp_extension.CUDAExtension(
            "realsr_fast._C",
            CPU_SOURCES + CUDA_SOURCES,
            include_dirs=nvidia_include_dirs(),
            extra_compile_args={"cxx": cxx_flags, "nvcc": ["-O3", "--expt-relaxed-constexpr"]},
            extra_link_args=["-fopenmp"],
        )
    return cpp_extension.CppExtension(
        "realsr_fast._C", CPU_SOURCES, extra_compile_args={"cxx": cxx_flags}, extra_link_args=["-fopenmp"]
    )


class BuildExtension(cpp_extension.BuildExtension):
    """torch's ninja build, with its objects in one fixed folder (build/temp): an editable install
    otherwise compiles in a new temporary folder each time, so a second `pip install -e .` (the
    test extras after the demo, say) rebuilt every object; here ninja recompiles what changed."""

    def finalize_options(self) -> None:
        super().finalize_options()
        self.build_temp = os.path.join("build", "temp")


setup(
    ext_modules=[extension()],
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
)
