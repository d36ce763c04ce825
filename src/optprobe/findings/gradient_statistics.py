"""Gradient statistics (Tran, Zhang & Cutkosky, App. D.2–D.3; D.1 only reported).

Finding: the gradient noise σ_t = ‖g_t − ∇F(x_t)‖ does not shrink over training, Adam's stochastic
gradients stay closer to ∇F than SGD's, and Adam's parameter norm is larger than SGD's.
Statistics per seed: R = mean σ over the last third / over the first third of the full-batch points
(the report card's variance-reduction ratio); mean σ(Adam) / mean σ(SGD); final ‖x‖(Adam) / ‖x‖(SGD).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from optprobe.findings.base import Check, Criterion, Runs, SeedRun, across_seeds, per_seed
from optprobe.report.verdicts import check_stationarity, check_variance_reduction, series


def noise_ratio(run: SeedRun) -> float:
    """R = mean grad_std over the last third / the first third of its measurements (NaN below 6)."""
    return check_variance_reduction(run.table, run.info).value


def mean_noise(run: SeedRun) -> float:
    """Mean of grad_std = ‖g_t − ∇F(x_t)‖ over every full-batch point."""
    return float(series(run.table, "grad_std").mean())


def final_param_norm(run: SeedRun) -> float:
    """‖x‖ at the last step."""
    norms = series(run.table, "param_norm")
    return float(norms.iloc[-1]) if len(norms) else math.nan


def _family(seeds: Sequence[SeedRun]) -> str:
    names = {str(run.info.get("optimizer", "")) for run in seeds}
    return "adam" if all(n.startswith("adam") for n in names) else "sgd" if all(
        n.startswith("sgd") for n in names
    ) else ""


def _paired(a: Sequence[SeedRun], b: Sequence[SeedRun], fn: Callable[[SeedRun], float]) -> list[float]:
    """fn(a)/fn(b) for the seeds both label groups ran."""
    other = {run.info.get("seed"): fn(run) for run in b}
    return [fn(run) / other[s] for run in a if (s := run.info.get("seed")) in other and other[s] > 0]


def _noise_detail(seeds: Sequence[SeedRun]) -> str:
    points = [len(series(run.table, "grad_std")) for run in seeds]
    stationarity = np.nanmean([check_stationarity(run.table, run.info).value for run in seeds])
    return (
        f"{len(seeds)} seeds, {points} full-batch points; not judged (App. D.1): ‖∇F‖ last / first "
        f"{stationarity:.3g}"
    )


def test(runs: Runs, *, noise_ratio_above: float, adam_noise_below: float, adam_norm_above: float
         ) -> list[Check]:  # fmt: skip
    """Per run R > ``noise_ratio_above``; Adam vs SGD (first label of each): σ ratio < ``adam_noise_below``
    and ‖x‖ ratio > ``adam_norm_above``."""
    checks = [
        Check(f"{label}: gradient noise ‖g − ∇F‖, mean over the last third / first third of the points",
              per_seed(seeds, noise_ratio), Criterion(">", noise_ratio_above), _noise_detail(seeds))
        for label, seeds in runs.items()
    ]  # fmt: skip
    adam = next(((k, s) for k, s in runs.items() if _family(s) == "adam"), None)
    sgd = next(((k, s) for k, s in runs.items() if _family(s) == "sgd"), None)
    if adam is None or sgd is None:
        return checks
    pair = f"{adam[0]} / {sgd[0]}"
    checks.append(Check(
        f"{pair}: mean gradient noise ‖g − ∇F‖ over the run (Adam closer to ∇F)",
        across_seeds(_paired(adam[1], sgd[1], mean_noise)), Criterion("<", adam_noise_below),
        f"seed-paired ratios; mean σ {np.nanmean([mean_noise(r) for r in adam[1]]):.3g} vs "
        f"{np.nanmean([mean_noise(r) for r in sgd[1]]):.3g}",
    ))  # fmt: skip
    checks.append(Check(
        f"{pair}: final parameter norm ‖x‖ (Adam larger)",
        across_seeds(_paired(adam[1], sgd[1], final_param_norm)), Criterion(">", adam_norm_above),
        f"seed-paired ratios; mean ‖x‖ {np.nanmean([final_param_norm(r) for r in adam[1]]):.3g} vs "
        f"{np.nanmean([final_param_norm(r) for r in sgd[1]]):.3g}",
    ))  # fmt: skip
    return checks
