"""Benchmarks time ours and a baseline in the same run; `python benchmarks/ratios.py JSON` turns a
pytest-benchmark JSON file into the ratio tables of benchmarks/README.md.

Naming: in each benchmark group the test named `..._ours` is what the ratios are taken against.

Modes (benchmarks/README.md):
- full: every case, full rounds; `--benchmark-autosave` stores the run in benchmarks/history/
  (the default storage here), which `python benchmarks/history.py` plots;
- `--quick` (CI): only the cases named in benchmarks/floors.json, at most QUICK_ROUNDS rounds each.
In both modes every case of floors.json that ran is checked against its floor at the end; one
below its floor fails the session and is named with its ratio and floor.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch
from pytest_benchmark.utils import get_commit_info

sys.path.insert(0, str(Path(__file__).parent))  # floors.py lives next to this file, outside the package
import floors

HISTORY = Path(__file__).parent / "history"
DEFAULT_STORAGE = "file://./.benchmarks"  # pytest-benchmark's default, replaced by HISTORY
QUICK_ROUNDS = 2
# For `benchmark(fn)` calls: at 0.1 s / 5 rounds a busy 2-core machine (load ~18) once put batchnorm_relu
# at 0.69x against 2.2-2.6x in other runs; more rounds give the median a chance.
QUICK_TIMING = {"benchmark_max_time": "0.5", "benchmark_min_rounds": 10}


def pytest_addoption(parser):
    parser.addoption("--quick", action="store_true",
                     help="run only the cases of benchmarks/floors.json, few rounds, and gate on their floors")


@pytest.hookimpl(tryfirst=True)  # before pytest-benchmark reads its options in its own pytest_configure
def pytest_configure(config):
    if config.getoption("benchmark_storage") == DEFAULT_STORAGE:
        config.option.benchmark_storage = f"file://{HISTORY}"
    if config.getoption("quick"):
        for option, value in QUICK_TIMING.items():
            setattr(config.option, option, value)
    config._realsr_load = os.getloadavg()
    config._realsr_commit = get_commit_info(config.getoption("benchmark_project_name", None))


def _gated_nodeids() -> set[str]:
    return {nodeid for case in floors.load_cases() for nodeid in (case.ours, case.baseline)}


def pytest_collection_modifyitems(config, items):
    if not config.getoption("quick"):
        return
    wanted = _gated_nodeids()
    collected_files = {item.nodeid.split("::")[0] for item in items}
    missing = sorted(nodeid for nodeid in wanted
                     if nodeid.split("::")[0] in collected_files and nodeid not in {item.nodeid for item in items})
    if missing:
        raise pytest.UsageError(f"benchmarks/floors.json names benchmarks that do not exist: {', '.join(missing)}")
    keep = [item for item in items if item.nodeid in wanted]
    config.hook.pytest_deselected(items=[item for item in items if item.nodeid not in wanted])
    items[:] = keep


@pytest.fixture
def benchmark(benchmark, request):
    """pytest-benchmark's fixture; in quick mode its `pedantic` is capped at QUICK_ROUNDS rounds and
    one warm-up round (pytest-benchmark insists on its own fixture object, so the method is wrapped)."""
    if request.config.getoption("quick"):
        pedantic = benchmark.pedantic

        def quick_pedantic(target, *args, rounds=1, warmup_rounds=0, **kwargs):
            return pedantic(target, *args, rounds=min(rounds, QUICK_ROUNDS),
                            warmup_rounds=min(warmup_rounds, 1), **kwargs)

        benchmark.pedantic = quick_pedantic
    return benchmark


@pytest.fixture(autouse=True, scope="session")
def _two_threads():
    # The reference machine has 2 cores; pin torch to them so runs are comparable.
    torch.set_num_threads(2)


@pytest.hookimpl(tryfirst=True)
def pytest_benchmark_generate_commit_info(config):
    """The commit the run started from: pytest-benchmark asks at the end, and a commit made while a
    long run goes on must not be credited with its numbers."""
    return config._realsr_commit


def pytest_benchmark_update_json(config, benchmarks, output_json):
    """Saved runs say which mode made them and how busy the machine was (1-minute load average)."""
    output_json["realsr"] = {"mode": "quick" if config.getoption("quick") else "full",
                             "load_before": config._realsr_load[0], "load_after": os.getloadavg()[0]}


def pytest_sessionfinish(session, exitstatus):
    config = session.config
    records = [bench.as_dict(include_data=False) for bench in config._benchmarksession.benchmarks]
    verdicts = floors.check(records, floors.load_cases())
    config._realsr_verdicts = verdicts
    if any(verdict.failed for verdict in verdicts):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, config):
    verdicts = getattr(config, "_realsr_verdicts", [])
    if any(verdict.ratio is not None for verdict in verdicts):
        terminalreporter.section("benchmark ratio floors (benchmarks/floors.json)")
        terminalreporter.write_line(floors.report(verdicts))
