"""The smoothness-schedule finding on synthetic smoothness series whose end level is known."""

from __future__ import annotations

import numpy as np

from optprobe.findings import Outcome
from optprobe.findings.smoothness_schedule import test as finding

from .fake_runs import FakeRun, seeds, table

CRITERION = {"tail": 0.1, "ratio_above": 1.0}


def smooth_runs(schedule: str, end_level: float, spread: float = 0.0):
    """Three seeds of 500 steps: inst_smooth_prev = 10 (±1 noise) until step 450, then ``end_level``
    (+ spread·(seed − 1)); step 0 is NaN."""

    def make(seed, rng):
        smooth = 10.0 + rng.standard_normal(500)
        smooth[450:] = end_level + spread * (seed - 1) + 0.1 * rng.standard_normal(50)
        smooth[0] = np.nan
        return table({"lr": np.full(500, 0.05), "inst_smooth_prev": smooth})

    return seeds(make, run_config={"schedule": schedule})


def test_larger_smoothness_at_the_end_of_a_decayed_schedule_reproduces():
    runs = {"constant": smooth_runs("constant", 10.0), "cosine": smooth_runs("cosine", 20.0)}
    (check,) = finding(runs, **CRITERION)
    assert check.outcome is Outcome.REPRODUCED and check.statistic.startswith("cosine")


def test_smaller_smoothness_is_not_reproduced():
    runs = {"constant": smooth_runs("constant", 10.0), "step": smooth_runs("step", 5.0)}
    (check,) = finding(runs, **CRITERION)
    assert check.outcome is Outcome.NOT_REPRODUCED


def test_seeds_on_both_sides_are_inconclusive():
    runs = {"constant": smooth_runs("constant", 10.0), "step": smooth_runs("step", 10.0, spread=5.0)}
    (check,) = finding(runs, **CRITERION)
    assert check.outcome is Outcome.INCONCLUSIVE


def test_no_constant_run_gives_no_check():
    assert finding({"cosine": smooth_runs("cosine", 20.0)}, **CRITERION) == []


def test_statistic_is_the_seed_paired_ratio_of_last_tenth_medians():
    constant, cosine = smooth_runs("constant", 10.0, spread=1.0), smooth_runs("cosine", 20.0, spread=3.0)
    constant = [constant[2], constant[0], constant[1]]  # seeds are paired by run.json seed, not by order
    (check,) = finding({"constant": constant, "cosine": cosine}, **CRITERION)

    def end(run: FakeRun) -> float:
        return float(np.median(run.table["inst_smooth_prev"].to_numpy()[450:]))

    by_seed = {run.info["seed"]: end(run) for run in constant}
    ratios = [end(run) / by_seed[run.info["seed"]] for run in cosine]
    assert np.isclose(check.estimate.value, np.mean(ratios), rtol=1e-12) and check.estimate.n == 3
