"""Random scaling (Tran, Zhang & Cutkosky, Sec. 4.3, Fig. 8): Σ⟨g_t, Δ_t/s_t⟩ accounts for Σ Δloss.

Finding: with s_t ~ Exp(1), Σ update_corr_rs tracks Σ loss_diff; without random scaling, Σ update_corr
drifts upward, away from the loss change. Statistic: per seed z = Σ_t d_t / (√n·std d_t) with
d_t = corr_t − loss_diff_t (``progress_identity_z``); across seeds the z-test Z = Σ_seeds z / √(seeds).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from optprobe.findings.base import Check, Criterion, Estimate, Runs, SeedRun
from optprobe.report.verdicts import progress_identity_z, series


def pooled_z(seeds: Sequence[SeedRun], column: str) -> Estimate:
    """Stouffer's Z = Σ z_seed / √k over the k seeds with a finite z (already in standard units under the
    identity, so the estimate is the point Z itself; NaN when no seed has one)."""
    zs = [z for z in (progress_identity_z(run.table, column)[0] for run in seeds) if math.isfinite(z)]
    if not zs:
        return Estimate(math.nan, math.nan, math.nan, 0)
    z = float(sum(zs) / math.sqrt(len(zs)))
    return Estimate(z, z, z, len(zs))


def _final(run: SeedRun, column: str) -> float:
    values = series(run.table, column)
    return float(values.iloc[-1]) if len(values) else math.nan


def _detail(seeds: Sequence[SeedRun], column: str) -> str:
    zs = ", ".join(f"{progress_identity_z(run.table, column)[0]:.2f}" for run in seeds)
    steps = sum(progress_identity_z(run.table, column)[1] for run in seeds)
    corr = np.nanmean([_final(run, f"cum_{column}") for run in seeds])
    diff = np.nanmean([_final(run, "cum_loss_diff") for run in seeds])
    plain = np.nanmean([_final(run, "cum_update_corr") for run in seeds])
    return (
        f"{len(seeds)} seeds, {steps} steps in all; per-seed z {zs}; mean final Σ {column} {corr:.3g}, "
        f"Σ loss_diff {diff:.3g}, Σ update_corr {plain:.3g}"
    )


def _random_scaling(seeds: Sequence[SeedRun]) -> bool:
    return bool(seeds) and all(run.info.get("random_scaling") is True for run in seeds)


def test(runs: Runs, *, z_track: float, z_drift: float) -> list[Check]:
    """Runs with random scaling: |Z| ≤ ``z_track`` for update_corr_rs; runs without: Z > ``z_drift`` for
    the plain update_corr (it does not track the loss change and lies above it)."""
    checks = []
    for label, seeds in runs.items():
        if _random_scaling(seeds):
            checks.append(Check(
                f"{label}: pooled z of Σ(update_corr_rs − loss_diff) (tracks the loss change)",
                pooled_z(seeds, "update_corr_rs"), Criterion("in", (-z_track, z_track)),
                _detail(seeds, "update_corr_rs"),
            ))  # fmt: skip
        else:
            checks.append(Check(
                f"{label}: pooled z of Σ(update_corr − loss_diff) (drifts above the loss change)",
                pooled_z(seeds, "update_corr"), Criterion(">", z_drift), _detail(seeds, "update_corr"),
            ))  # fmt: skip
    return checks
