"""The random-scaling finding on synthetic progress series whose drift is known."""

from __future__ import annotations

import math

import numpy as np

from optprobe.findings import Outcome, combine
from optprobe.findings.random_scaling import test as finding

from .fake_runs import seeds, table

CRITERION = {"z_track": 3.0, "z_drift": 3.0}


def progress(drift: float, random_scaling: bool):
    """Three seeds of 300 steps: loss_diff ~ N(−0.01, 0.01²), corr = loss_diff + drift + N(0, 0.02²);
    with random scaling corr is update_corr_rs (update_corr is then corr·s), else both columns are corr."""

    def make(seed, rng):
        diff = rng.normal(-0.01, 0.01, 300)
        corr = diff + drift + rng.normal(0.0, 0.02, 300)
        plain = corr * rng.exponential(1.0, 300) if random_scaling else corr
        diff[0] = corr[0] = plain[0] = np.nan  # step 0 has no previous iterate
        cols = {"loss_diff": diff, "update_corr": plain, "update_corr_rs": corr}
        cols |= {f"cum_{k}": np.nancumsum(v) for k, v in cols.items()}
        return table(cols)

    return seeds(make, random_scaling=random_scaling)


def test_rs_tracks_and_plain_drifts_reproduces():
    runs = {"sgdm": progress(0.01, False), "sgdm_rs": progress(0.0, True)}
    checks = finding(runs, **CRITERION)
    assert [c.outcome for c in checks] == [Outcome.REPRODUCED] * 2
    assert "drifts above" in checks[0].statistic and "tracks" in checks[1].statistic


def test_rs_sum_drifting_from_the_loss_change_is_not_reproduced():
    checks = finding({"adamw_rs": progress(0.01, True)}, **CRITERION)
    assert checks[0].outcome is Outcome.NOT_REPRODUCED


def test_plain_sum_that_tracks_the_loss_is_not_reproduced():
    checks = finding({"adamw": progress(0.0, False), "adamw_rs": progress(0.0, True)}, **CRITERION)
    assert checks[0].outcome is Outcome.NOT_REPRODUCED
    assert combine([c.outcome for c in checks]) is Outcome.NOT_REPRODUCED


def test_statistic_is_stouffers_z_of_each_seeds_summed_differences():
    runs = progress(0.002, True)
    (check,) = finding({"rs": runs}, **CRITERION)
    zs = []
    for run in runs:
        d = (run.table["update_corr_rs"] - run.table["loss_diff"]).dropna().to_numpy()
        zs.append(d.sum() / (math.sqrt(len(d)) * d.std(ddof=1)))
    assert np.isclose(check.estimate.value, sum(zs) / math.sqrt(3), rtol=1e-12) and check.estimate.n == 3
    assert f"{zs[0]:.2f}" in check.detail


def test_missing_columns_are_not_measured():
    run = progress(0.0, True)
    for r in run:
        r.table = r.table.drop(columns=["loss_diff"])
    (check,) = finding({"rs": run}, **CRITERION)
    assert check.outcome is Outcome.NOT_MEASURED
