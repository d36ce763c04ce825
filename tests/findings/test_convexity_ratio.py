"""The convexity-ratio finding on synthetic tables: the final cumulative ratio against x* is positive."""

from __future__ import annotations

import numpy as np

from optprobe.experiments.registry import get_experiment
from optprobe.findings import Outcome
from optprobe.findings.convexity_ratio import test as finding

from .tran_tables import seeds, step_table

CRITERION = get_experiment("convexity_ratio").criterion  # the shipped experiment file's numbers
CONFIG = {"reference": "pilot", "epochs": 6, "pilot_epochs": 12}


def ratio_runs(final: float, spread: float = 0.05):
    """Ratios that wander from 2 towards ``final`` ± spread; F(x_t) − F(x*) ends at 0.1."""

    def make(rng):
        n = 50
        ratio = np.linspace(2.0, final, n) + spread * rng.standard_normal(n)
        full = np.linspace(2.3, 0.2, n)
        return step_table({"convexity_ratio": ratio, "full_loss": full, "ref_full_loss": np.full(n, 0.1)})

    return seeds(make, run_config=CONFIG)


def test_positive_ratio_below_one_reproduces_weak_quasi_convexity():
    (check,) = finding({"longer_pilot": ratio_runs(0.6)}, **CRITERION)
    assert check.outcome is Outcome.REPRODUCED
    assert "12-epoch run from the same seed" in check.detail and "0.1" in check.detail


def test_negative_ratio_is_not_reproduced():
    (check,) = finding({"other_seed": ratio_runs(-0.5)}, **CRITERION)
    assert check.outcome is Outcome.NOT_REPRODUCED


def test_ratio_near_zero_is_inconclusive_and_the_statistic_is_the_final_ratio():
    runs = ratio_runs(0.0, spread=0.3)
    (check,) = finding({"run": runs}, **CRITERION)
    finals = [r.table["convexity_ratio"].dropna().iloc[-1] for r in runs]
    assert np.isclose(check.estimate.value, np.mean(finals), rtol=1e-12)
    assert (min(finals) < 0 < max(finals)) == (check.outcome is Outcome.INCONCLUSIVE)
