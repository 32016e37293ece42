"""Ratio history of the saved benchmark runs: one PNG per suite and the table of benchmarks/README.md.

    python benchmarks/history.py                    # benchmarks/history/ -> benchmarks/plots/*.png + README table

Every run saved by pytest-benchmark (`--benchmark-autosave`, storage benchmarks/history/ by
default here) is one point per case of benchmarks/floors.json that it measured: the case's ratio
(baseline / ours, same run), over the runs in time order, labelled by commit. The floor is drawn
dashed in the case's colour; a point under its line is a regression and is circled in red.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import floors

HERE = Path(__file__).parent
README_BEGIN, README_END = "<!-- history:begin -->", "<!-- history:end -->"
TABLE_RUNS = 8  # the table shows the latest runs; the plots show all


@dataclass(frozen=True)
class Run:
    """One saved pytest-benchmark run (a JSON file of the storage)."""

    path: Path
    when: datetime
    commit: str  # short id, `*` when the tree had uncommitted changes
    machine: str
    mode: str  # quick / full
    load: str  # 1-minute load average before -> after, when recorded
    ratios: dict[str, float]  # case name -> ratio

    @property
    def label(self) -> str:
        return f"{self.commit}\n{self.when:%m-%d %H:%M}\n{self.mode}"


def load_run(path: Path, cases: list[floors.Case]) -> Run:
    data = json.loads(path.read_text())
    commit = data.get("commit_info", {})
    machine = data.get("machine_info", {})
    extra = data.get("realsr", {})
    load = f"{extra['load_before']:.1f} -> {extra['load_after']:.1f}" if "load_before" in extra else "-"
    return Run(
        path=path,
        when=datetime.fromisoformat(data["datetime"]),
        commit=commit.get("id", "unknown")[:7] + ("*" if commit.get("dirty") else ""),
        machine=f"{machine.get('node', '?')}, {machine.get('cpu', {}).get('brand_raw', '?')}",
        mode=extra.get("mode", "full"),  # runs saved before the mode was recorded were full runs
        load=load,
        ratios={v.case.name: v.ratio for v in floors.check(data["benchmarks"], cases) if v.ratio is not None},
    )


def load_runs(storage: Path, cases: list[floors.Case]) -> list[Run]:
    runs = [load_run(path, cases) for path in sorted(storage.rglob("*.json"))]
    return sorted((run for run in runs if run.ratios), key=lambda run: run.when)


def plot_suite(suite: str, cases: list[floors.Case], runs: list[Run], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    runs = [run for run in runs if any(case.name in run.ratios for case in cases)]
    fig, ax = plt.subplots(figsize=(max(9.0, 1.1 * len(runs) + 6), 4.2))
    for index, case in enumerate(cases):
        points = [(x, run.ratios[case.name]) for x, run in enumerate(runs) if case.name in run.ratios]
        if not points:
            continue
        colour = f"C{index % 10}"
        xs, ys = zip(*points)
        ax.plot(xs, ys, "o-", color=colour, label=case.name.split(": ", 1)[-1])
        if case.floor is not None:
            ax.axhline(case.floor, color=colour, linestyle="--", linewidth=1)
            low = [(x, y) for x, y in points if y < case.floor]
            if low:
                ax.scatter(*zip(*low), s=160, facecolors="none", edgecolors="red", linewidths=2, zorder=3)
    ax.set_yscale("log")
    ratio_format = matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:g}x")
    ax.yaxis.set_major_formatter(ratio_format)
    ax.yaxis.set_minor_formatter(ratio_format)
    ax.tick_params(axis="y", which="minor", labelsize=7)
    ax.set_xticks(range(len(runs)), [run.label for run in runs], fontsize=7)
    ax.set_ylabel("ratio: baseline / ours (higher is better)")
    ax.set_title(f"{suite}: ratio per saved run (dashed: floor)")
    ax.grid(True, which="both", axis="y", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    tmp.replace(out)


def _cell(case: floors.Case, value: float | None) -> str:
    if value is None:
        return "-"
    if case.floor is not None and value < case.floor:
        return f"**{value:.2f}x ✗**"
    return f"{value:.2f}x"


def markdown(by_suite: dict[str, list[floors.Case]], runs: list[Run], plots: dict[str, Path], readme_dir: Path) -> str:
    """Per suite: its latest runs (newest first), one column per case, then its plot."""
    lines = ["Ratios are baseline / ours of the same run; **bold ✗**: below the floor. `*` after a commit:",
             "the tree had uncommitted changes. Load: the 1-minute load average before -> after the run.", ""]
    for suite, cases in by_suite.items():
        suite_runs = [run for run in runs if any(case.name in run.ratios for case in cases)][-TABLE_RUNS:]
        cases = [case for case in cases if any(case.name in run.ratios for run in suite_runs)]
        if not cases:
            continue
        headers = [case.name.split(": ", 1)[-1] + ("" if case.floor is None else f" (floor {case.floor:g}x)")
                   for case in cases]
        lines += [f"#### {suite}", "", "| commit | date (UTC) | mode | machine | load | " + " | ".join(headers) + " |",
                  "|---|---|---|---|---|" + "---|" * len(cases)]
        for run in reversed(suite_runs):
            cells = [_cell(case, run.ratios.get(case.name)) for case in cases]
            lines.append(f"| `{run.commit}` | {run.when:%Y-%m-%d %H:%M} | {run.mode} | {run.machine} | {run.load} | "
                         + " | ".join(cells) + " |")
        lines += ["", f"![{suite}]({plots[suite].relative_to(readme_dir)})", ""]
    return "\n".join(lines)


def write_readme_section(readme: Path, text: str) -> None:
    content = readme.read_text()
    begin, end = content.index(README_BEGIN) + len(README_BEGIN), content.index(README_END)
    tmp = readme.with_suffix(".md.tmp")
    tmp.write_text(content[:begin] + "\n" + text + "\n" + content[end:])
    tmp.replace(readme)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--storage", type=Path, default=HERE / "history", help="pytest-benchmark file storage")
    parser.add_argument("--plots", type=Path, default=HERE / "plots")
    parser.add_argument("--readme", type=Path, default=HERE / "README.md",
                        help=f"file whose text between {README_BEGIN} and {README_END} is replaced")
    args = parser.parse_args(argv)
    cases = floors.load_cases()
    runs = load_runs(args.storage, cases)
    by_suite: dict[str, list[floors.Case]] = {}
    for case in cases:
        by_suite.setdefault(case.suite, []).append(case)
    plots = {}
    for suite, suite_cases in by_suite.items():
        if any(case.name in run.ratios for run in runs for case in suite_cases):
            plots[suite] = args.plots / f"{suite}.png"
            plot_suite(suite, suite_cases, runs, plots[suite])
    text = markdown(by_suite, runs, plots, args.readme.parent)
    write_readme_section(args.readme, text)
    print(text)


if __name__ == "__main__":
    main()
