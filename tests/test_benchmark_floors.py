"""The benchmark ratio floors (benchmarks/floors.py, floors.json, `pytest benchmarks --quick`) catch
a regression and say which case, its ratio and its floor; the history tool plots saved runs."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"


@pytest.fixture
def bench(monkeypatch):
    """The benchmarks/ scripts as modules (they live outside the package, like pytest imports them)."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import floors
    import history

    return floors, history


def record(nodeid: str, median: float, **extra_info) -> dict:
    """A pytest-benchmark JSON record with only what the floors read."""
    return {"fullname": nodeid, "name": nodeid.split("::")[-1], "stats": {"median": median}, "extra_info": extra_info}


def write_floors(path: Path, cases: dict) -> Path:
    path.write_text(json.dumps({"cases": cases}))
    return path


def write_results(path: Path, benchmarks: list[dict], when: str = "2026-11-28T04:00:00+00:00",
                  commit: str = "a" * 40) -> Path:
    path.write_text(json.dumps({"benchmarks": benchmarks, "datetime": when,
                                "commit_info": {"id": commit, "dirty": False},
                                "machine_info": {"node": "box", "cpu": {"brand_raw": "CPU"}}}))
    return path


CASE = {"ours": "benchmarks/bench_x.py::test_fast_ours", "baseline": "benchmarks/bench_x.py::test_slow", "floor": 3.0}


def test_ratio_below_floor_fails_naming_case_ratio_and_floor(bench, tmp_path, capsys):
    floors, _ = bench
    floors_file = write_floors(tmp_path / "floors.json", {"x: fast vs slow": CASE})
    results = write_results(tmp_path / "run.json", [record(CASE["ours"], 0.010), record(CASE["baseline"], 0.025)])
    assert floors.main([str(results), "--floors", str(floors_file)]) == 1
    out = capsys.readouterr().out
    assert "x: fast vs slow: ratio 2.50x, floor 3.00x -> BELOW FLOOR" in out
    assert "1 benchmark ratio(s) below their floor" in out


def test_ratio_at_or_above_floor_passes(bench, tmp_path, capsys):
    floors, _ = bench
    floors_file = write_floors(tmp_path / "floors.json", {"x: fast vs slow": CASE})
    results = write_results(tmp_path / "run.json", [record(CASE["ours"], 0.010), record(CASE["baseline"], 0.030)])
    assert floors.main([str(results), "--floors", str(floors_file)]) == 0
    assert "ratio 3.00x, floor 3.00x -> ok" in capsys.readouterr().out


def test_metric_path_unmeasured_and_ungated_cases(bench):
    floors, _ = bench
    per_image = floors.Case("per image", ours="o", baseline="b", floor=10.0, metric="extra_info.ms_per_image")
    missing = floors.Case("missing", ours="o", baseline="gone", floor=10.0)
    ungated = floors.Case("ungated", ours="o", baseline="b", floor=None)
    # 16 images at 2 ms each against 1 image at 50 ms: 25x per image, though the medians are 32 vs 50 ms.
    records = [record("o", 0.032, ms_per_image=2.0), record("b", 0.050, ms_per_image=50.0)]
    verdicts = {v.case.name: v for v in floors.check(records, [per_image, missing, ungated])}
    assert verdicts["per image"].ratio == pytest.approx(25.0) and not verdicts["per image"].failed
    assert verdicts["missing"].ratio is None and not verdicts["missing"].failed
    assert verdicts["ungated"].ratio == pytest.approx(50 / 32) and not verdicts["ungated"].failed
    assert "no floor yet" in verdicts["ungated"].message()


def test_update_sets_floor_at_margin_of_lowest_ratio_rounded_down(bench, tmp_path):
    floors, _ = bench
    floors_file = write_floors(tmp_path / "floors.json", {"x: fast vs slow": dict(CASE, floor=None)})
    quiet = write_results(tmp_path / "quiet.json", [record(CASE["ours"], 0.010), record(CASE["baseline"], 0.0900)])
    busy = write_results(tmp_path / "busy.json", [record(CASE["ours"], 0.010), record(CASE["baseline"], 0.0567)])
    assert floors.main([str(quiet), str(busy), "--floors", str(floors_file), "--update"]) == 0
    fields = json.loads(floors_file.read_text())["cases"]["x: fast vs slow"]
    assert fields["measured"] == pytest.approx(5.67)
    assert fields["floor"] == 3.9  # 0.7 x 5.67 = 3.969, two digits, rounded down


def test_floors_file_names_real_benchmarks(bench):
    """Every gated benchmark's test function exists in its file (the quick run also checks ids)."""
    floors, _ = bench
    for case in floors.load_cases():
        for nodeid in (case.ours, case.baseline):
            path, name = nodeid.split("::")
            assert f"def {name.split('[')[0]}(" in (ROOT / path).read_text(), nodeid


def test_history_plots_and_table_from_saved_runs(bench, tmp_path):
    floors, history = bench
    case = next(case for case in floors.load_cases() if case.floor is not None and case.metric == "stats.median")
    storage = tmp_path / "history" / "machine"
    storage.mkdir(parents=True)
    healthy, regressed = 2 * case.floor, 0.5 * case.floor
    runs = [(healthy, "2026-11-28T04:00:00+00:00"), (regressed, "2026-11-28T05:00:00+00:00")]
    for number, (ratio, when) in enumerate(runs):
        records = [record(case.ours, 0.01), record(case.baseline, 0.01 * ratio)]
        write_results(storage / f"000{number + 1}_run.json", records, when=when, commit=f"{number + 1}" * 40)
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{history.README_BEGIN}\nstale table\n{history.README_END}\noutro\n")
    history.main(["--storage", str(tmp_path / "history"), "--plots", str(tmp_path / "plots"), "--readme", str(readme)])
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n") and "stale table" not in text
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    assert rows[0].startswith("| `2222222` | 2026-11-28 05:00 |") and rows[0].endswith(f"| **{regressed:.2f}x ✗** |")
    assert rows[1].startswith("| `1111111` | 2026-11-28 04:00 |") and rows[1].endswith(f"| {healthy:.2f}x |")
    assert f"(floor {case.floor:g}x)" in text
    png = tmp_path / "plots" / f"{case.suite}.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"]({png.relative_to(tmp_path)})" in text


def test_patch_stats_baselines_equal_the_reference(bench, rng):
    """The stock compositions timed against patch_stats compute the same thing (bit-identical)."""
    import bench_ops  # importable through the `bench` fixture's sys.path entry

    from realsr_fast import ops

    image = torch.from_numpy(rng.integers(0, 256, (2, 3, 131, 170), dtype=np.uint8))
    for patch, stride in [(32, 8), (7, 3), (131, 1)]:
        mean, var = ops.patch_stats_reference(image, patch, stride)
        for baseline in (bench_ops.patch_stats_integral_image, bench_ops.patch_stats_separable_box_filters):
            got_mean, got_var = baseline(image, patch, stride)
            assert torch.equal(got_mean, mean) and torch.equal(got_var, var), (baseline.__name__, patch, stride)


INJECT = """
from realsr_fast import ops

def pytest_configure(config):
    ops.degrade = ops.degrade_reference  # the deliberate regression: ours calls the stock composition
"""


@pytest.mark.slow
def test_quick_run_fails_when_the_op_regresses(tmp_path):
    """End to end: `pytest benchmarks --quick` with `ops.degrade` swapped for its reference fails and
    names the case, its ratio (~1x) and its floor."""
    (tmp_path / "inject_slow_degrade.py").write_text(textwrap.dedent(INJECT))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(tmp_path)]))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "benchmarks/bench_ops.py", "--quick", "-q", "-p", "inject_slow_degrade",
         "-p", "no:cacheprovider", "-k", "train_batch and cpu"],
        check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert "ops: degrade training batch vs torch composition (cpu): ratio" in out
    assert "-> BELOW FLOOR" in out and "below their floor in benchmarks/floors.json" in out
    assert "2 passed" in out  # both benchmarks ran; only the floor failed the session
