"""Tables and the trust thresholds from the JSON of `bench_kernel_families.py` (docs/evaluation.md).

The thresholds of the natural-photo checks (spectral slope range, orientation, residual spread) and of
the family agreement are chosen on the development JSON only, then applied unchanged to the locked
JSON. "As trained" is what `realsr adapt` trains with: the estimate, or the fallback kernel where the
estimate is flagged. The choice: among the threshold combinations that flag at least `FAR_OFF_SHARE`
of the far-off estimates (more than `FAR_OFF_DB` below the best constant kernel), the one with the
highest mean as-trained gain over the best constant. Flagging alone is cheap (flag everything); what a
false alarm costs is the estimate's gain, which the as-trained mean counts.

Run: python benchmarks/kernel_families_tables.py DEV.json... -- LOCKED.json...
"""
from __future__ import annotations

import itertools
import json
import sys
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Rule:
    """The trust thresholds: an estimate is flagged when any check fails."""

    slope_low: float
    slope_high: float
    max_orientation: float
    max_spread: float
    min_agreement_db: float

    def flags(self, row: dict) -> bool:
        return bool(not self.slope_low <= row["slope"] <= self.slope_high or row["orientation"] > self.max_orientation
                    or row["residual_spread"] > self.max_spread or row["family_agreement_db"] < self.min_agreement_db)


FAR_OFF_DB = 3.0
FAR_OFF_SHARE = 2 / 3
GRID = {"slope_low": (0.0, 1.2, 1.4, 1.6, 1.8, 2.0), "slope_high": (3.0, 3.2, 3.4, np.inf),
        "max_orientation": (0.6, 0.8, 1.0, 1.2, 1.5, np.inf), "max_spread": (0.3, 0.4, 0.5, 0.6, 0.8, np.inf),
        "min_agreement_db": (-np.inf, 30, 35, 40)}


def rows_of(paths: list[str]) -> list[dict]:
    rows = []
    for path in paths:
        for group in json.load(open(path))["groups"]:
            if group["method"] != "families":
                continue
            for row in group["rows"]:
                rows.append({**row, "group": (group["family"], group["condition"]),
                             "gain": row["psnr"]["estimate"] - row["psnr"]["constant"]})
    return rows


def rates(rows: list[dict], rule: Rule) -> tuple[int, int, int, int]:
    """Flagged estimates below the best constant, their count, flagged others, their count."""
    bad = [r for r in rows if r["gain"] < 0]
    good = [r for r in rows if r["gain"] >= 0]
    return sum(rule.flags(r) for r in bad), len(bad), sum(rule.flags(r) for r in good), len(good)


def far_off_flagged(rows: list[dict], rule: Rule) -> tuple[int, int]:
    far = [r for r in rows if r["gain"] < -FAR_OFF_DB]
    return sum(rule.flags(r) for r in far), len(far)


def trained_gains(rows: list[dict], rule: Rule) -> np.ndarray:
    """Gain over the best constant of the kernel training uses: the estimate, or the fallback if flagged."""
    return np.array([(r["psnr"]["fallback"] if rule.flags(r) else r["psnr"]["estimate"]) - r["psnr"]["constant"]
                     for r in rows])


def choose(rows: list[dict]) -> Rule:
    best, choice = -np.inf, None
    for values in itertools.product(*GRID.values()):
        rule = Rule(*values)
        hit, far = far_off_flagged(rows, rule)
        score = trained_gains(rows, rule).mean()
        if hit >= FAR_OFF_SHARE * far and score > best:
            best, choice = score, rule
    return choice


def table(paths: list[str], rule: Rule) -> str:
    lines = ["| family | condition | mean gain over best constant (dB) | above it | as trained: gain, above | "
             "best constant sigma (px) | s/photo |", "|---|---|---|---|---|---|---|"]
    for path in paths:
        for g in json.load(open(path))["groups"]:
            if g["method"] != "families":
                continue
            gains = np.array([r["psnr"]["estimate"] - r["psnr"]["constant"] for r in g["rows"]])
            trained = trained_gains(g["rows"], rule)
            n = len(gains)
            lines.append(f"| {g['family']} | {g['condition']} | {gains.mean():+.2f} | "
                         f"{100 * (gains > 0).mean():.0f} % ({int((gains > 0).sum())}/{n}) | "
                         f"{trained.mean():+.2f} dB, {100 * (trained > 0).mean():.0f} % | "
                         f"{g['constant_sigma']:.2f} | {g['seconds_per_image']:.1f} |")
    return "\n".join(lines)


def main() -> None:
    split = sys.argv.index("--")
    dev, locked = sys.argv[1:split], sys.argv[split + 1:]
    rule = choose(rows_of(dev))
    print(f"trust thresholds chosen on the development set: {rule}")
    for name, paths in (("development", dev), ("locked", locked)):
        if not paths:
            continue
        rows = rows_of(paths)
        hit, bad, false, good = rates(rows, rule)
        far_hit, far = far_off_flagged(rows, rule)
        gains, trained = np.array([r["gain"] for r in rows]), trained_gains(rows, rule)
        print(f"\n### {name}\n\n{table(paths, rule)}\n\ntrust: {far_hit} of {far} far-off estimates (over {FAR_OFF_DB:g} dB "
              f"below the constant) flagged, {hit} of {bad} below it, {false} of {good} others; mean gain over all "
              f"{len(rows)}: estimates {gains.mean():+.2f} dB ({100 * (gains > 0).mean():.0f} % above), as trained "
              f"{trained.mean():+.2f} dB ({100 * (trained > 0).mean():.0f} % above)")


if __name__ == "__main__":
    main()
