"""The update-correlation finding on synthetic tables: convex runs negative, deep-learning runs positive."""

from __future__ import annotations

import numpy as np

from optprobe.experiments.registry import get_experiment
from optprobe.findings import Outcome, combine
from optprobe.findings.update_correlation import test as finding

from .tran_tables import seeds, step_table

CRITERION = get_experiment("update_correlation").criterion  # the shipped experiment file's numbers


def corr_runs(mean: float, task: str, spread: float = 0.0):
    """Three seeds of 200 steps of update_corr ~ N(mean + spread·(seed − 1), 0.01²); step 0 is NaN."""
    counter = iter(range(3))

    def make(rng):
        corr = rng.normal(mean + spread * (next(counter) - 1), 0.01, 200)
        corr[0] = np.nan
        return step_table({"update_corr": corr})

    return seeds(make, task=task)


def test_negative_on_convex_and_positive_in_deep_learning_reproduces():
    checks = finding({"logistic": corr_runs(-0.01, "logistic_breast_cancer"),
                      "cnn": corr_runs(0.01, "cnn_digits")}, **CRITERION)  # fmt: skip
    assert [c.outcome for c in checks] == [Outcome.REPRODUCED] * 2
    assert "convex run" in checks[0].detail and "deep-learning run" in checks[1].detail


def test_negative_deep_learning_correlation_is_not_reproduced():
    checks = finding({"logistic": corr_runs(-0.01, "logistic_breast_cancer"),
                      "cnn": corr_runs(-0.01, "cnn_digits")}, **CRITERION)  # fmt: skip
    assert checks[1].outcome is Outcome.NOT_REPRODUCED
    assert combine([c.outcome for c in checks]) is Outcome.NOT_REPRODUCED


def test_seeds_of_both_signs_are_inconclusive():
    (check,) = finding({"gpt": corr_runs(0.0, "gpt_shakespeare", spread=0.01)}, **CRITERION)
    assert check.outcome is Outcome.INCONCLUSIVE


def test_statistic_is_the_mean_over_seeds_of_each_seeds_mean_over_all_steps():
    runs = corr_runs(0.02, "cnn_digits", spread=0.005)
    (check,) = finding({"cnn": runs}, **CRITERION)
    per_seed = [np.nanmean(r.table.loc[r.table["event"] == "step", "update_corr"]) for r in runs]
    assert np.isclose(check.estimate.value, np.mean(per_seed), rtol=1e-12)
    half = check.estimate.high - check.estimate.value
    assert np.isclose(half, 4.302652729911275 * np.std(per_seed, ddof=1) / np.sqrt(3), rtol=1e-9)
    assert check.estimate.n == 3
