"""Update correlation (Tran, Zhang & Cutkosky, Sec. 4.2, Figs. 6–7): the descent-lemma sign along real runs.

Finding: ⟨g_t, Δ_t⟩ is negative on average on convex tasks and positive on average in deep learning.
Statistic: per seed c̄ = (1/T) Σ_t ⟨g_t, x_t − x_{t−1}⟩ over every measured step; t-interval across seeds.
"""

from __future__ import annotations

from collections.abc import Sequence

from optprobe.findings.base import Check, Criterion, Runs, SeedRun, per_seed
from optprobe.report.verdicts import mean_interval, series

#: Tasks whose training loss is convex in the parameters (a fact of the task, not a criterion).
CONVEX_TASKS = frozenset({"least_squares", "logistic_breast_cancer", "logistic_synthetic", "quadratic"})


def is_convex(seeds: Sequence[SeedRun]) -> bool:
    """Whether the runs train a convex task (by ``run.json``'s task name)."""
    return bool(seeds) and all(run.info.get("task") in CONVEX_TASKS for run in seeds)


def mean_update_corr(run: SeedRun) -> float:
    """c̄ = mean of update_corr = ⟨g_t, Δ_t⟩ over every measured step of one run (NaN when absent)."""
    return float(series(run.table, "update_corr").mean())


def update_corr_check(label: str, seeds: Sequence[SeedRun], criterion: Criterion, kind: str) -> Check:
    """The check "mean ⟨g_t, Δ_t⟩ of ``label`` meets ``criterion``", with per-seed batch-means intervals."""
    estimate = per_seed(seeds, mean_update_corr)
    corrs = [series(run.table, "update_corr") for run in seeds]
    intervals = [mean_interval(c.to_numpy()) for c in corrs if len(c)]
    cis = ", ".join(f"[{low:.2g}, {high:.2g}]" for _, low, high in intervals)
    steps = sum(len(c) for c in corrs)
    positive = sum(int((c > 0).sum()) for c in corrs) / max(steps, 1)
    detail = (
        f"{kind} run, {len(seeds)} seeds, {steps} steps in all; within-seed 95% batch-means intervals "
        f"{cis or 'none'}; ⟨g_t, Δ_t⟩ > 0 at {positive:.0%} of steps"
    )
    return Check(f"{label}: mean ⟨g_t, x_t − x_(t−1)⟩ over all steps", estimate, criterion, detail)


def test(runs: Runs, *, convex_below: float, deep_above: float) -> list[Check]:
    """Convex runs: mean update_corr < ``convex_below``; deep-learning runs: > ``deep_above``."""
    checks = []
    for label, seeds in runs.items():
        if is_convex(seeds):
            checks.append(update_corr_check(label, seeds, Criterion("<", convex_below), "convex"))
        else:
            checks.append(update_corr_check(label, seeds, Criterion(">", deep_above), "deep-learning"))
    return checks
