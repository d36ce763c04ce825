"""The convex-sanity finding on synthetic tables: gaps ≤ 0, mean update_corr < 0, ratio against x* > 1."""

from __future__ import annotations

import numpy as np

from optprobe.experiments.registry import get_experiment
from optprobe.findings import Outcome
from optprobe.findings.convex_sanity import test as finding

from .tran_tables import seeds, step_table

CRITERION = get_experiment("convex_sanity").criterion  # the shipped experiment file's numbers


def convex_runs(positive_gaps: int = 0, ratio: float = 2.0):
    """GD-like run: gaps ≤ 0 except ``positive_gaps`` steps above the round-off tolerance."""

    def make(rng):
        n = 40
        loss = np.exp(-np.arange(n) / 10) + 0.1
        gap = -rng.uniform(1e-4, 1e-2, n)
        gap[:positive_gaps] = 1e-3
        gap[-1] = 5e-7  # positive but within tol = 1e-6·(1 + loss): counts as ≤ 0
        corr = -rng.uniform(1e-3, 1e-2, n)
        return step_table({"loss": loss, "inst_gap_prev": gap, "inst_gap_ref": gap - 1.0, "update_corr": corr,
                           "convexity_ratio": np.full(n, ratio)})  # fmt: skip

    return seeds(make, task="least_squares", run_config={"reference": "minimizer"})


def test_convex_run_reproduces():
    checks = finding({"gd": convex_runs()}, **CRITERION)
    assert [c.outcome for c in checks] == [Outcome.REPRODUCED] * 3
    assert checks[0].estimate.value == 1.0
    assert "exact minimizer" in checks[2].detail


def test_one_positive_gap_is_not_reproduced_with_its_exact_share():
    checks = finding({"gd": convex_runs(positive_gaps=1)}, **CRITERION)
    assert checks[0].outcome is Outcome.NOT_REPRODUCED
    assert np.isclose(checks[0].estimate.value, 1 - 3 / (2 * 3 * 40))  # 1 of 80 gaps in each of 3 seeds
    assert "3 of 120 positive" in checks[0].detail


def test_ratio_below_one_is_not_reproduced():
    checks = finding({"gd": convex_runs(ratio=0.8)}, **CRITERION)
    assert checks[2].outcome is Outcome.NOT_REPRODUCED
