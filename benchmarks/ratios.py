"""Print the ratio table of a pytest-benchmark JSON file (markdown).

Usage: python benchmarks/ratios.py benchmarks/results/ops_cpu.json [more.json ...]

For every group (and device) the row of the benchmark whose name ends in `_ours` is the reference; every other
row shows how many times slower it is (its median / ours' median).
"""
from __future__ import annotations

import json
import sys
from collections import defaultdict


def ratio_table(path: str) -> str:
    with open(path) as f:
        data = json.load(f)
    groups: dict[str, list[tuple[str, float]]] = defaultdict(list)
    for bench in data["benchmarks"]:
        device = (bench.get("params") or {}).get("device", "cpu")
        groups[f"{bench['group'] or bench['name']} ({device})"].append((bench["name"], bench["stats"]["median"]))
    machine = data.get("machine_info", {})
    lines = [f"`{path}` — {machine.get('cpu', {}).get('brand_raw', 'unknown CPU')}, {data.get('datetime', '')}", "",
             "| group | benchmark | median | ours is x times faster |", "|---|---|---|---|"]
    for group, rows in sorted(groups.items()):
        ours = next((t for name, t in rows if name.split("[")[0].endswith("_ours")), None)
        for name, t in sorted(rows, key=lambda r: r[1]):
            ratio = f"{t / ours:.1f}x" if ours else "-"
            lines.append(f"| {group} | {name} | {t * 1e3:.2f} ms | {ratio} |")
    return "\n".join(lines)


if __name__ == "__main__":
    for json_path in sys.argv[1:]:
        print(ratio_table(json_path), end="\n\n")
