"""Ratio floors: each gated case is ours against a baseline timed in the same run, and its ratio
(baseline / ours, higher is better) must not fall below the floor kept in benchmarks/floors.json.

Absolute times move with the machine and its load; the ratio of two things timed side by side in
one run moves much less, so it is what CI gates on (the floor is ~70 % of a measured ratio).

    python benchmarks/floors.py RESULTS.json [...]            # check pytest-benchmark JSON files
    python benchmarks/floors.py RESULTS.json [...] --update   # floors = 70 % of the lowest ratio in them

`python -m pytest benchmarks --quick` runs exactly the benchmarks named here and checks them at the
end of the session (benchmarks/conftest.py).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

FLOORS_PATH = Path(__file__).with_name("floors.json")
MARGIN = 0.7  # floor = MARGIN x measured ratio: room for the noise of a shared machine


@dataclass(frozen=True)
class Case:
    """One gated ratio: `baseline` / `ours` of `metric` (a path into a benchmark's JSON record)."""

    name: str
    ours: str
    baseline: str
    floor: float | None  # None: reported, not gated yet (never measured on such a machine)
    metric: str = "stats.median"
    measured: float | None = None
    note: str = ""

    @property
    def suite(self) -> str:
        """`benchmarks/bench_ops.py::...` -> `ops`."""
        return self.ours.split("::")[0].rsplit("/", 1)[-1].removeprefix("bench_").removesuffix(".py")


@dataclass(frozen=True)
class Verdict:
    case: Case
    ratio: float | None  # None when either side did not run (skipped, deselected)

    @property
    def failed(self) -> bool:
        return self.ratio is not None and self.case.floor is not None and not self.ratio >= self.case.floor

    def message(self) -> str:
        case = self.case
        if self.ratio is None:
            return f"{case.name}: not run"
        if case.floor is None:
            return f"{case.name}: ratio {self.ratio:.2f}x (no floor yet)"
        verdict = "BELOW FLOOR" if self.failed else "ok"
        return (f"{case.name}: ratio {self.ratio:.2f}x, floor {case.floor:.2f}x -> {verdict} "
                f"({case.baseline.split('::')[-1]} / {case.ours.split('::')[-1]})")


def load_cases(path: Path = FLOORS_PATH) -> list[Case]:
    """The cases of a floors file: ``{"cases": {name: {ours, baseline, floor, ...}}}``."""
    with open(path) as f:
        return [Case(name=name, **fields) for name, fields in json.load(f)["cases"].items()]


def _metric(record: dict, path: str) -> float:
    value = record
    for key in path.split("."):
        value = value[key]
    return float(value)


def ratio(case: Case, records: dict[str, dict]) -> float | None:
    """baseline / ours of `case.metric`, from benchmark records keyed by their `fullname`."""
    if case.ours not in records or case.baseline not in records:
        return None
    ours = _metric(records[case.ours], case.metric)
    baseline = _metric(records[case.baseline], case.metric)
    return baseline / ours if ours > 0 else math.inf


def check(benchmarks: list[dict], cases: list[Case]) -> list[Verdict]:
    """One verdict per case from a list of pytest-benchmark records (the JSON's `benchmarks`)."""
    records = {record["fullname"]: record for record in benchmarks}
    return [Verdict(case, ratio(case, records)) for case in cases]


def report(verdicts: list[Verdict]) -> str:
    lines = [verdict.message() for verdict in verdicts if verdict.ratio is not None]
    failed = [verdict for verdict in verdicts if verdict.failed]
    if failed:
        lines.append(f"{len(failed)} benchmark ratio(s) below their floor in benchmarks/floors.json: "
                     + "; ".join(f"{v.case.name} {v.ratio:.2f}x < {v.case.floor:.2f}x" for v in failed))
    return "\n".join(lines)


def _two_digits_down(x: float) -> float:
    """3.4567 -> 3.4, 0.6789 -> 0.67: readable and never above the margin's value."""
    scale = 10 ** (math.floor(math.log10(x)) - 1)
    return round(math.floor(x / scale) * scale, 10)


def updated_floors(path: Path, runs: list[list[dict]]) -> dict:
    """The floors file with every case measured in `runs` (each a list of benchmark records)
    re-floored at MARGIN x the lowest ratio it had: the noisiest run sets the floor."""
    with open(path) as f:
        data = json.load(f)
    lowest: dict[str, float] = {}
    for benchmarks in runs:
        for verdict in check(benchmarks, load_cases(path)):
            if verdict.ratio is not None:
                lowest[verdict.case.name] = min(verdict.ratio, lowest.get(verdict.case.name, math.inf))
    for name, value in lowest.items():
        data["cases"][name]["measured"] = round(value, 3)
        data["cases"][name]["floor"] = _two_digits_down(MARGIN * value)
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path, nargs="+",
                        help="pytest-benchmark JSON files (--benchmark-json, or saved runs)")
    parser.add_argument("--floors", type=Path, default=FLOORS_PATH)
    parser.add_argument("--update", action="store_true",
                        help=f"set the floors measured here to {MARGIN} x their lowest ratio")
    args = parser.parse_args(argv)
    runs = [json.loads(path.read_text())["benchmarks"] for path in args.results]
    if args.update:
        text = json.dumps(updated_floors(args.floors, runs), indent=2) + "\n"
        tmp = args.floors.with_suffix(".json.tmp")
        tmp.write_text(text)
        tmp.replace(args.floors)  # atomic: a half-written floors file would gate CI on garbage
    failed = False
    for path, benchmarks in zip(args.results, runs):
        verdicts = check(benchmarks, load_cases(args.floors))
        print(f"{path}:\n{report(verdicts)}")
        failed |= any(verdict.failed for verdict in verdicts)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
