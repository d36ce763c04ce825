"""The edge-of-stability finding on synthetic sharpness curves whose edge ratio is known."""

from __future__ import annotations

import numpy as np

from optprobe.findings import Outcome, combine
from optprobe.findings.edge_of_stability import test as finding

from .fake_runs import seeds, table

CRITERION = {"band": [0.9, 1.1], "tail": 0.25, "start_below": 0.9}


def sharpening(lr: float, start: float, plateau: float, spread: float = 0.0, full_batch: bool = True):
    """Three seeds of 400 steps: λ_max·η/2 rises linearly from ``start`` to ``plateau`` over the first
    half, then hovers there (±0.02 noise, plateau shifted by spread·(seed − 1)); sharpness every 10 steps."""

    def make(seed, rng):
        top = plateau + spread * (seed - 1)
        ratio = np.concatenate([np.linspace(start, top, 200), top + 0.02 * rng.standard_normal(200)])
        sharp = np.full(400, np.nan)
        sharp[::10] = ratio[::10] * 2 / lr
        return table({"loss": np.ones(400), "lr": np.full(400, lr), "sharpness": sharp})

    return seeds(make, lr=lr, full_batch=full_batch)


def test_sharpening_to_the_edge_reproduces():
    checks = finding({"mlp": sharpening(0.4, 0.5, 1.02), "cnn": sharpening(0.13, 0.7, 0.98)}, **CRITERION)
    assert [c.outcome for c in checks] == [Outcome.REPRODUCED] * 4


def test_sharpness_that_stalls_below_the_edge_is_not_reproduced():
    checks = finding({"cnn": sharpening(0.13, 0.5, 0.75)}, **CRITERION)
    assert [c.outcome for c in checks] == [Outcome.REPRODUCED, Outcome.NOT_REPRODUCED]
    assert combine([c.outcome for c in checks]) is Outcome.NOT_REPRODUCED


def test_starting_above_the_edge_is_not_progressive_sharpening():
    checks = finding({"mlp": sharpening(0.4, 1.5, 1.0)}, **CRITERION)
    assert checks[0].outcome is Outcome.NOT_REPRODUCED and checks[1].outcome is Outcome.REPRODUCED


def test_seeds_straddling_the_band_are_inconclusive():
    checks = finding({"mlp": sharpening(0.4, 0.5, 1.0, spread=0.1)}, **CRITERION)
    assert checks[1].outcome is Outcome.INCONCLUSIVE


def test_minibatch_runs_are_not_tested():
    assert finding({"sgd": sharpening(0.4, 0.5, 1.0, full_batch=False)}, **CRITERION) == []


def test_statistic_is_the_median_of_the_last_quarter_of_sharpness_times_lr_over_two():
    runs = sharpening(0.4, 0.5, 1.0, spread=0.03)
    start, edge = finding({"mlp": runs}, **CRITERION)
    per_seed = []
    for run in runs:
        rows = run.table.dropna(subset=["sharpness"])
        ratio = (rows["sharpness"] * rows["lr"] / 2).to_numpy()
        per_seed.append(np.median(ratio[-10:]))  # 40 measurements: the last quarter is 10
    assert np.isclose(edge.estimate.value, np.mean(per_seed), rtol=1e-12)
    half = edge.estimate.high - edge.estimate.value
    assert np.isclose(half, 4.302652729911275 * np.std(per_seed, ddof=1) / np.sqrt(3), rtol=1e-9)
    first = [run.table["sharpness"].iloc[0] * 0.4 / 2 for run in runs]
    assert np.isclose(start.estimate.value, np.mean(first), rtol=1e-12) and edge.estimate.n == 3
