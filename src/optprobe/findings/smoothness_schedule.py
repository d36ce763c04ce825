"""Smoothness under a learning-rate schedule (Tran, Zhang & Cutkosky, Sec. 4, Fig. 4).

Finding: smaller learning rates give larger measured smoothness: as a schedule decays the step size, the
instantaneous smoothness rises above that of the same run at a constant learning rate.
Statistic per seed and scheduled run: ρ = median of inst_smooth_prev over its last ``tail`` fraction of
steps / the same median in the constant-lr run of the same seed; t-interval across seeds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from optprobe.findings.base import Check, Criterion, Runs, SeedRun, across_seeds
from optprobe.report.verdicts import series


def end_smoothness(run: SeedRun, tail: float) -> float:
    """Median of inst_smooth_prev over the steps in the last ``tail`` fraction of the run (NaN if none)."""
    smooth = series(run.table, "inst_smooth_prev")
    if smooth.empty:
        return math.nan
    last = float(series(run.table, "step").max())
    return float(smooth[smooth.index >= (1.0 - tail) * (last + 1)].median())


def _end_lr(run: SeedRun, tail: float) -> float:
    lr = series(run.table, "lr")
    return float(lr[lr.index >= (1.0 - tail) * (lr.index.max() + 1)].mean()) if len(lr) else math.nan


def _is_constant(seeds: Sequence[SeedRun]) -> bool:
    return bool(seeds) and all(run.info.get("run_config", {}).get("schedule") == "constant" for run in seeds)


def test(runs: Runs, *, tail: float, ratio_above: float) -> list[Check]:
    """Each scheduled run: end smoothness / the constant run's of the same seed > ``ratio_above``."""
    constant = next((seeds for seeds in runs.values() if _is_constant(seeds)), None)
    if constant is None:
        return []
    base = {run.info.get("seed"): end_smoothness(run, tail) for run in constant}
    checks = []
    for label, seeds in runs.items():
        if seeds is constant:
            continue
        own = {run.info.get("seed"): end_smoothness(run, tail) for run in seeds}
        ratios = [own[s] / base[s] if base.get(s, 0) > 0 else math.nan for s in own]
        lr, lr0 = (np.nanmean([_end_lr(r, tail) for r in group]) for group in (seeds, constant))
        detail = (
            f"{len(ratios)} seed pairs; median inst_smooth over the last {tail:.0%} of steps "
            f"{np.nanmean(list(own.values())):.3g} (mean lr there {lr:.2g}) vs "
            f"{np.nanmean(list(base.values())):.3g} at constant lr ({lr0:.2g})"
        )
        checks.append(Check(
            f"{label}: end-of-run smoothness / constant-lr run's (median inst_smooth, last {tail:.0%})",
            across_seeds(ratios), Criterion(">", ratio_above), detail,
        ))  # fmt: skip
    return checks
