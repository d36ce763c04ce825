"""Edge of stability (Cohen et al. 2021, replicated in Tran, Zhang & Cutkosky, Sec. 4.1, Fig. 5).

Finding: under full-batch GD the sharpness λ_max(∇²F) starts below 2/η, rises, and then hovers at 2/η.
Statistics per seed: start ratio ρ_0 = λ_max(x_0)·η/2; edge ratio ρ = median over the last ``tail``
fraction of the curvature measurements of λ_max(x_t)·η_t/2; t-interval across seeds, per run label.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from optprobe.findings.base import Check, Criterion, Runs, SeedRun, per_seed
from optprobe.report.verdicts import edge_ratios, last_part, series


def tail_ratio(run: SeedRun, fraction: float, column: str | None = None) -> float:
    """Median over the tail of λ_max·η/2 (column None), or of ``column`` / λ_max on the sharpness rows."""
    if column is None:
        values = edge_ratios(run.table)
    else:
        sharp = series(run.table, "sharpness")
        other = series(run.table, column)
        other = other[~other.index.duplicated(keep="last")]
        values = (other.reindex(sharp.index) / sharp).dropna()
    return float(np.median(last_part(values, fraction))) if len(values) else math.nan


def start_ratio(run: SeedRun) -> float:
    """λ_max·η/2 at the first sharpness measurement (NaN when there is none)."""
    ratios = edge_ratios(run.table)
    return float(ratios.iloc[0]) if len(ratios) else math.nan


def _is_full_batch(seeds: Sequence[SeedRun]) -> bool:
    return bool(seeds) and all(run.info.get("full_batch") is True for run in seeds)


def _describe(seeds: Sequence[SeedRun], fraction: float) -> str:
    n = [len(edge_ratios(run.table)) for run in seeds]
    proxies = []
    columns = {c for run in seeds for c in run.table.columns if c.startswith("exp_smooth_prev_")}
    for column in ("max_smooth_prev", *sorted(columns)):
        ratios = [tail_ratio(run, fraction, column) for run in seeds]
        if any(math.isfinite(r) for r in ratios):
            proxies.append(f"{column.replace('_prev', '')}/λ_max {np.nanmean(ratios):.3g}")
    eta = ", ".join(f"{e:g}" for e in sorted({float(run.info.get("lr", math.nan)) for run in seeds}))
    detail = f"full-batch GD, η = {eta}, {len(seeds)} seeds, {n} sharpness points"
    return detail + (f"; over the same tail (not judged): {', '.join(proxies)}" if proxies else "")


def test(runs: Runs, *, band: Sequence[float], tail: float, start_below: float) -> list[Check]:
    """Per full-batch run label: ρ_0 < ``start_below`` (progressive sharpening has room) and ρ in ``band``."""
    checks = []
    for label, seeds in runs.items():
        if not _is_full_batch(seeds):
            continue
        detail = _describe(seeds, tail)
        checks.append(Check(
            f"{label}: sharpness / (2/η) at the first measurement (starts below the edge)",
            per_seed(seeds, start_ratio), Criterion("<", start_below), detail,
        ))  # fmt: skip
        checks.append(Check(
            f"{label}: median sharpness / (2/η) over the last {tail:.0%} of measurements",
            per_seed(seeds, lambda run: tail_ratio(run, tail)), Criterion("in", (band[0], band[1])), detail,
        ))  # fmt: skip
    return checks
