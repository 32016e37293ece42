"""Tables and the trust thresholds from the JSON of `bench_kernel_families.py` (docs/evaluation.md).

The thresholds of the trust signals (spectrum misfit, family agreement) are chosen on the development
JSON only (the pair that maximises hit rate minus false-alarm rate, where a miss is an estimate below the
best constant kernel) and then applied unchanged to the locked JSON.

Run: python benchmarks/kernel_families_tables.py DEV.json... -- LOCKED.json...
"""
from __future__ import annotations

import json
import sys

import numpy as np


def rows_of(paths: list[str]) -> list[dict]:
    rows = []
    for path in paths:
        for group in json.load(open(path))["groups"]:
            for row in group["rows"]:
                rows.append({**row, "group": (group["family"], group["condition"]),
                             "gain": row["psnr"]["estimate"] - row["psnr"]["constant"]})
    return rows


def flagged(row: dict, misfit: float, agreement: float) -> bool:
    return row["misfit"] > misfit or row["family_agreement_db"] < agreement


def rates(rows: list[dict], misfit: float, agreement: float) -> tuple[int, int, int, int]:
    bad = [r for r in rows if r["gain"] < 0]
    good = [r for r in rows if r["gain"] >= 0]
    return (sum(flagged(r, misfit, agreement) for r in bad), len(bad),
            sum(flagged(r, misfit, agreement) for r in good), len(good))


def choose(rows: list[dict]) -> tuple[float, float]:
    best, choice = -np.inf, (np.inf, -np.inf)
    for misfit in [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.5, np.inf]:
        for agreement in [-np.inf, 25, 30, 35, 40, 45, 50]:
            hit, bad, false, good = rates(rows, misfit, agreement)
            score = hit / max(1, bad) - false / max(1, good)
            if score > best:
                best, choice = score, (misfit, agreement)
    return choice


def table(paths: list[str]) -> str:
    lines = ["| family | condition | mean gain over best constant (dB) | above it | best constant sigma (px) | s/photo |",
             "|---|---|---|---|---|---|"]
    for path in paths:
        for g in json.load(open(path))["groups"]:
            lines.append(f"| {g['family']} | {g['condition']} | {g['mean_gain_db']:+.2f} | "
                         f"{100 * g['share_above']:.0f} % ({round(g['share_above'] * len(g['rows']))}/{len(g['rows'])}) | "
                         f"{g['constant_sigma']:.2f} | {g['seconds_per_image']:.1f} |")
    return "\n".join(lines)


def main() -> None:
    split = sys.argv.index("--")
    dev, locked = sys.argv[1:split], sys.argv[split + 1:]
    misfit, agreement = choose(rows_of(dev))
    print(f"trust thresholds chosen on the development set: misfit <= {misfit}, family agreement >= {agreement} dB")
    for name, paths in (("development", dev), ("locked", locked)):
        hit, bad, false, good = rates(rows_of(paths), misfit, agreement)
        print(f"\n### {name}\n\n{table(paths)}\n\ntrust: {hit} of {bad} estimates below the constant flagged; "
              f"{false} of {good} others flagged")


if __name__ == "__main__":
    main()
