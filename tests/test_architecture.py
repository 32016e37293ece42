"""The package's import graph is one-way: a module imports only from lower layers or its own folder.

The layers are drawn in docs/ARCHITECTURE.md. Every `import` counts, including the lazy ones inside
functions (they still make the importing code depend on the imported one). Run this file as a script
(`python tests/test_architecture.py [package_dir] [unit=layer ...]`, the extra pairs placing units
of an older tree) to print the graph summary: units per layer, back edges and cycles.
"""
from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = "realsr_fast"
PACKAGE_DIR = Path(__file__).resolve().parents[1] / PACKAGE

LAYERS: dict[str, int] = {
    # 0-2: foundation: the exception and version; device, image I/O, the compiled ops, optional
    # packages; folder-job plumbing, pretrained-weight downloads
    "_version": 0, "errors": 0, "image_formats": 0, "_C": 0,
    "device": 1, "io": 1, "ops": 1, "optional": 1,
    "batch": 2, "download": 2,
    "metrics": 3,
    # 3: the network definitions and weight formats; training data and its file formats; the
    # backend-agnostic tiler; image-quality metrics (LPIPS fetches its weights)
    "models": 3, "data": 3, "tiling": 3,
    # 4: what is built on those: kernel estimation, ONNX/TensorRT export, folder evaluation, the
    # report layer (HTML pages, figures, kernel and noise pictures) the applications share
    "kernel_estimation": 4, "export": 4, "evaluate": 4, "report": 4,
    # 5: the runtimes: inference over tile runners, training
    "inference": 5, "train": 5,
    # 6: the end-to-end demo job
    "demo": 6,
    # 7: camera adaptation (drives the stages and training)
    "adaptation": 7,
    # 8: the command line and the package's public face
    "commands": 8, "cli": 8, "__init__": 8,
    # 9: `python -m realsr_fast` (runs the cli)
    "__main__": 9,
}


def unit_of(module: str) -> str:
    """`realsr_fast.data.paired` -> `data`; `realsr_fast` -> `__init__`."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def module_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, module: str) -> set[str]:
    """Every realsr_fast module that `path` imports (top level or inside functions)."""
    found: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == PACKAGE)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            if base.split(".")[0] != PACKAGE:
                continue
            for alias in node.names:  # `from realsr_fast import ops` imports the module `ops`
                found.add(f"{base}.{alias.name}" if base == PACKAGE else base)
    return found


def import_graph(root: Path = PACKAGE_DIR) -> dict[str, set[str]]:
    """Module -> the package modules it imports."""
    found = {module_name(path, root): imports_of(path, module_name(path, root)) for path in sorted(root.rglob("*.py"))}
    modules = set(found) | {f"{PACKAGE}._C"}
    # `from realsr_fast import __version__` names no module: the package root, which every import
    # runs anyway and which only re-exports layer-0 names (and `Upscaler` lazily), is no edge.
    return {src: {t for t in targets if t in modules and t != src} for src, targets in found.items()}


def back_edges(graph: dict[str, set[str]], layers: dict[str, int] = LAYERS) -> list[tuple[str, str]]:
    """Edges from a unit to another unit of the same or a higher layer."""
    bad = []
    for src, targets in graph.items():
        for dst in sorted(targets):
            a, b = unit_of(src), unit_of(dst)
            if a != b and layers[b] >= layers[a]:
                bad.append((src, dst))
    return bad


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in list(edges):
        if v not in index:
            visit(v)
    return found


def unit_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    units: dict[str, set[str]] = defaultdict(set)
    for src, targets in graph.items():
        units[unit_of(src)].update(unit_of(t) for t in targets if unit_of(t) != unit_of(src))
    return units


def test_every_unit_has_a_layer():
    units = {unit_of(m) for m in import_graph()}
    assert units <= set(LAYERS), f"give these a layer in LAYERS and docs/ARCHITECTURE.md: {units - set(LAYERS)}"


def test_no_import_runs_up_or_across_a_layer():
    assert back_edges(import_graph()) == []


def test_no_cycle_between_modules_or_folders():
    graph = import_graph()
    assert cycles(graph) == []
    assert cycles(unit_graph(graph)) == []


EVALUATION = "realsr_fast.kernel_estimation.evaluation"


def test_no_production_module_imports_the_evaluation_harness():
    """The kernel yardstick (scikit-image photos, truth kernels) is for tests/ and benchmarks/ only."""
    importers = sorted(m for m, targets in import_graph().items() if not m.startswith(EVALUATION)
                       and any(t == EVALUATION or t.startswith(EVALUATION + ".") for t in targets))
    assert importers == [], f"production modules importing {EVALUATION}: {importers}"


def test_the_checker_sees_a_back_edge_and_a_cycle():
    graph = {"realsr_fast.data.x": {"realsr_fast.inference.y"}, "realsr_fast.inference.y": {"realsr_fast.data.x"}}
    assert back_edges(graph) == [("realsr_fast.data.x", "realsr_fast.inference.y")]
    assert cycles(graph) == [["realsr_fast.data.x", "realsr_fast.inference.y"]]


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff is not installed (pip install ruff)")
def test_ruff_is_clean():
    """The lint rules of pyproject.toml ([tool.ruff]) hold, so CI runs them with the tests."""
    root = PACKAGE_DIR.parent
    result = subprocess.run(["ruff", "check", "--no-cache", PACKAGE, "tests", "benchmarks"], cwd=root,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


if __name__ == "__main__":
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else PACKAGE_DIR
    graph = import_graph(root)
    layers = dict(LAYERS) | {k: int(v) for k, v in (a.split("=") for a in sys.argv[2:])}
    by_layer: dict[int, list[str]] = defaultdict(list)
    for unit in sorted({unit_of(m) for m in graph}):
        by_layer[layers[unit]].append(unit)
    for layer in sorted(by_layer):
        print(f"layer {layer}: {', '.join(by_layer[layer])}")
    bad = back_edges(graph, layers)
    print(f"back edges ({len(bad)}):")
    for src, dst in bad:
        print(f"  {src} -> {dst}")
    print(f"module cycles: {cycles(graph)}")
    print(f"folder cycles: {cycles(unit_graph(graph))}")
