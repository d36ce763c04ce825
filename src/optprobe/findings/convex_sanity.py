"""Convex sanity (Tran, Zhang & Cutkosky, Sec. 3 and Fig. 1; Sec. 4.2 and Fig. 6): the measures agree with
theory where the loss is convex.

Finding: inst_gap ≤ 0 at every step, update_corr < 0 on average, convexity ratio against x* ≥ 1.
Statistics: share of (step, seed) pairs with inst_gap_t ≤ tol_t = 1e-6·(1 + |ℓ_t|) against x_{t−1} and x*
(exact count); per seed mean ⟨g_t, Δ_t⟩ and final convexity ratio r_T, t-intervals across seeds.
"""

from __future__ import annotations

from collections.abc import Sequence

from optprobe.findings.base import Check, Criterion, Estimate, Runs, SeedRun
from optprobe.findings.convexity_ratio import ratio_check
from optprobe.findings.update_correlation import update_corr_check
from optprobe.report.verdicts import _gap_tolerance, series


def convex_steps(run: SeedRun, against: str) -> tuple[int, int]:
    """(steps with inst_gap_<against> ≤ tol, measured steps) of one run."""
    gaps = series(run.table, f"inst_gap_{against}")
    if gaps.empty:
        return 0, 0
    return int((gaps <= _gap_tolerance(run.table, gaps)).sum()), len(gaps)


def gap_share_check(label: str, seeds: Sequence[SeedRun], criterion: Criterion) -> Check:
    """Share of all measured (step, seed, reference) gaps ≤ tol: an exact count, its interval a point."""
    counts = {against: [convex_steps(run, against) for run in seeds] for against in ("prev", "ref")}
    convex = sum(c for pairs in counts.values() for c, _ in pairs)
    total = sum(n for pairs in counts.values() for _, n in pairs)
    share = convex / total if total else float("nan")
    parts = [
        f"against {'x_(t−1)' if against == 'prev' else 'x*'}: {sum(n - c for c, n in pairs)} of "
        f"{sum(n for _, n in pairs)} positive"
        for against, pairs in counts.items()
        if any(n for _, n in pairs)
    ]
    detail = f"{len(seeds)} seeds; " + "; ".join(parts) + " (tol = 1e-6·(1 + |loss|))"
    estimate = Estimate(share, share, share, len(seeds) if total else 0)
    return Check(f"{label}: share of steps with inst_gap ≤ tol", estimate, criterion, detail)


def test(runs: Runs, *, convex_share: float, corr_below: float, ratio_above: float) -> list[Check]:
    """Per run: gap share ≥ ``convex_share``, mean update_corr < ``corr_below``, final ratio >
    ``ratio_above``."""
    checks = []
    for label, seeds in runs.items():
        checks.append(gap_share_check(label, seeds, Criterion("in", (convex_share, 1.0))))
        checks.append(update_corr_check(label, seeds, Criterion("<", corr_below), "convex"))
        checks.append(ratio_check(label, seeds, Criterion(">", ratio_above)))
    return checks
