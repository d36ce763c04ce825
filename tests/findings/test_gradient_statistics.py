"""The gradient-statistics finding on synthetic noise and norm series with known trends."""

from __future__ import annotations

import numpy as np

from optprobe.findings import Outcome
from optprobe.findings.gradient_statistics import test as finding

from .fake_runs import seeds, table

CRITERION = {"noise_ratio_above": 1.0, "adam_noise_below": 1.0, "adam_norm_above": 1.0}


def stats_runs(optimizer: str, noise_start: float, noise_end: float, norm: float, spread: float = 0.0):
    """Three seeds of 300 steps with full-batch points every 10 steps: grad_std goes linearly from
    ``noise_start`` to ``noise_end`` (+ spread·(seed − 1) at the end, ±1% noise); param_norm = ``norm``."""

    def make(seed, rng):
        std = np.full(300, np.nan)
        trend = np.linspace(noise_start, noise_end + spread * (seed - 1), 30)
        std[::10] = trend * (1 + 0.01 * rng.standard_normal(30))
        full = np.where(np.isnan(std), np.nan, 1.0)
        return table({"grad_std": std, "full_grad_norm": full, "param_norm": np.full(300, norm)})

    return seeds(make, optimizer=optimizer)


def test_growing_noise_smaller_for_adam_with_larger_norm_reproduces():
    runs = {"sgdm": stats_runs("sgdm", 1.0, 2.0, 10.0), "adamw": stats_runs("adamw", 0.5, 0.8, 20.0)}
    checks = finding(runs, **CRITERION)
    assert [c.outcome for c in checks] == [Outcome.REPRODUCED] * 4
    assert checks[2].statistic.startswith("adamw / sgdm")


def test_shrinking_noise_is_not_reproduced():
    runs = {"sgdm": stats_runs("sgdm", 2.0, 1.0, 10.0), "adamw": stats_runs("adamw", 3.0, 2.5, 5.0)}
    checks = finding(runs, **CRITERION)
    assert [c.outcome for c in checks] == [Outcome.NOT_REPRODUCED] * 4


def test_noise_that_does_not_separate_from_flat_is_inconclusive():
    (check,) = finding({"sgdm": stats_runs("sgdm", 1.0, 1.0, 10.0, spread=0.3)}, **CRITERION)
    assert check.outcome is Outcome.INCONCLUSIVE


def test_statistics_match_a_direct_recomputation():
    sgd = stats_runs("sgdm", 1.0, 2.0, 10.0, spread=0.2)
    adam = stats_runs("adamw", 0.5, 0.8, 20.0, spread=0.1)
    noise, _, ratio, _ = finding({"sgdm": sgd, "adamw": adam}, **CRITERION)
    thirds = []
    for run in sgd:
        std = run.table["grad_std"].dropna().to_numpy()  # 30 points: thirds of 10
        thirds.append(std[-10:].mean() / std[:10].mean())
    assert np.isclose(noise.estimate.value, np.mean(thirds), rtol=1e-12)
    means = [a.table["grad_std"].mean() / s.table["grad_std"].mean() for a, s in zip(adam, sgd, strict=True)]
    assert np.isclose(ratio.estimate.value, np.mean(means), rtol=1e-12) and ratio.estimate.n == 3
