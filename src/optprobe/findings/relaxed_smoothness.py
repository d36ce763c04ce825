"""Relaxed (L0, L1) smoothness (Orabona, part 4; Zhang et al., ICLR'20): smoothness grows with ‖∇F‖.

Finding: along SGD training the envelope L_t ≤ L0 + L1‖∇F(x_t)‖ is much tighter than a constant L; at a step
size where SGD is unstable, clipped SGD converges; generalized signSGD beats SGD at tuned step sizes.
Statistics, per seed then a t-interval across seeds: the gain 1 − Σ_t(L0 + L1 g_t) / (n max_t L_t) of
:func:`~optprobe.report.verdicts.check_relaxed_smoothness` (L_t Zhang et al.'s secant smoothness of F,
``full_smooth``, when the run measured it); log10(F_A(x_T) / F_B(x_T)) of final full losses.
"""

from __future__ import annotations

import math

import numpy as np

from optprobe.findings.base import Check, Criterion, Runs, SeedRun, across_seeds, per_seed
from optprobe.report.verdicts import check_relaxed_smoothness, relaxed_pairs, series


def final_full_loss(run: SeedRun) -> float:
    """min(F(x_T), F(x_0)) of the full-batch training loss: a run that diverged (its table ends at the
    blow-up) counts as having made no progress, not as its blown-up value, which would swamp the seeds."""
    loss = series(run.table, "full_loss")
    return min(float(loss.iloc[-1]), float(loss.iloc[0])) if len(loss) else math.nan


def clip_fraction(run: SeedRun) -> float:
    """Share of steps whose ‖g_t‖ exceeds γ/η, where min(η, γ/‖g‖) < η: the steps that were clipped."""
    config = run.info.get("run_config", {})
    threshold = float(config.get("optimizer_options", {}).get("clip", 1.0)) / float(run.info["lr"])
    grad = series(run.table, "grad_norm")
    return float(np.mean(grad > threshold)) if len(grad) else math.nan


def _edge(runs: Runs, a: str, b: str, criterion: Criterion, statistic: str, detail: str) -> Check:
    pairs = zip(runs[a], runs[b], strict=False)
    est = across_seeds([math.log10(final_full_loss(x) / final_full_loss(y)) for x, y in pairs])
    return Check(statistic, est, criterion, f"{detail}; final loss min(F(x_T), F(x_0)); {est.n} seeds")


def test(runs: Runs, min_gain: float, clip_edge_log10: float, sign_edge_log10: float) -> list[Check]:
    """The checks of the relaxed-smoothness finding; the criterion numbers come from the experiment file."""
    verdicts = [check_relaxed_smoothness(r.table, r.info) for r in runs["sgd"]]
    gain = across_seeds([v.value for v in verdicts])
    used = sorted({"L_t = {1} against g_t = {0}".format(*relaxed_pairs(r.table).columns)
                   for r in runs["sgd"]})  # fmt: skip
    fits = ", ".join(f"({v.params.get('L0', math.nan):.3g}, {v.params.get('L1', math.nan):.3g})"
                     for v in verdicts)  # fmt: skip
    clipped = per_seed(runs["clipped_sgd_large_lr"], clip_fraction)
    return [
        Check(
            "gain of the envelope L0 + L1‖∇F‖ over a constant L, SGD", gain, Criterion(">", min_gain),
            f"{'; '.join(used)}; (L0, L1) per seed {fits}; {gain.n} seeds",
        ),
        _edge(
            runs, "clipped_sgd_large_lr", "sgd_large_lr", Criterion("<", clip_edge_log10),
            "log10(final full loss clipped SGD / SGD), both at the large step size",
            f"clipped on {100 * clipped.value:.0f}% of the steps on average",
        ),
        _edge(
            runs, "generalized_signsgd", "sgd", Criterion("<", sign_edge_log10),
            "log10(final full loss generalized signSGD / SGD), tuned step sizes", "lrs tuned on seed 0",
        ),
    ]  # fmt: skip
