"""Convexity ratio (Tran, Zhang & Cutkosky, Sec. 3.2, Fig. 3): can convex analysis explain the progress?

Finding: against x* from an earlier run the ratio is positive, though possibly below 1 (weak
quasi-convexity: convex-analysis bounds hold up to a factor 1/ratio).
Statistic: per seed the final r_T = Σ_{i≤T} ⟨∇F(x_i), x_i − x*⟩ / Σ_{i≤T} (F(x_i) − F(x*)), t-interval
across seeds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from optprobe.findings.base import Check, Criterion, Runs, SeedRun, per_seed
from optprobe.report.verdicts import series


def final_ratio(run: SeedRun) -> float:
    """r_T: the last convexity_ratio of one run (the cumulative ratio over all its measurement points)."""
    ratio = series(run.table, "convexity_ratio")
    return float(ratio.iloc[-1]) if len(ratio) else math.nan


def _final_gap(run: SeedRun) -> float:
    """F(x_T) − F(x*) at the last measurement point (0 when x* is the run's own end point)."""
    full, ref = series(run.table, "full_loss"), series(run.table, "ref_full_loss")
    return float(full.iloc[-1] - ref.iloc[-1]) if len(full) and len(ref) else math.nan


def ratio_check(label: str, seeds: Sequence[SeedRun], criterion: Criterion) -> Check:
    """The check "final convexity ratio of ``label`` (against its run's x*) meets ``criterion``"."""
    estimate = per_seed(seeds, final_ratio)
    ratios = [series(run.table, "convexity_ratio") for run in seeds]
    lowest = min((float(r.min()) for r in ratios if len(r)), default=math.nan)
    gaps = ", ".join(f"{_final_gap(run):.3g}" for run in seeds)
    detail = (
        f"x* = {_reference_name(seeds)}; {len(seeds)} seeds; smallest cumulative ratio along the runs "
        f"{lowest:.3g}; "
        f"final F(x_T) − F(x*) per seed: {gaps}"
    )
    return Check(f"{label}: final convexity ratio r_T against x*", estimate, criterion, detail)


def test(runs: Runs, *, ratio_above: float) -> list[Check]:
    """Every run's final convexity ratio is > ``ratio_above`` (0: weak quasi-convexity)."""
    return [ratio_check(label, seeds, Criterion(">", ratio_above)) for label, seeds in runs.items()]


def _reference_name(seeds: Sequence[SeedRun]) -> str:
    """Words for the run's x*, from its run config (reference kind and pilot length)."""
    config = dict(seeds[0].info.get("run_config") or {}) if seeds else {}
    kind = config.get("reference", "?")
    epochs, pilot = config.get("epochs"), config.get("pilot_epochs") or config.get("epochs")
    if kind == "minimizer":
        return "the task's exact minimizer"
    seed = "the same seed" if kind == "pilot" else "the next seed"
    return f"final iterate of a {pilot}-epoch run from {seed} (this run: {epochs} epochs)"
