"""The rotation finding test on synthetic tables whose answer is known."""

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd

from optprobe.findings import Outcome, combine, rotation

CRITERION = dict(adam_edge_log10=0.0, same_level_factor=3.0, equivariance_rtol=1e-3, l11_over_spectral=1.0)
STEPS = np.arange(100)


def run(rate: float, seed: int, l11: float = 10.0, per_dim: float = 0.1, noise: float = 0.0):
    """A seed run whose loss decays as exp(−rate t), with constant Hessian statistics."""
    rng = np.random.default_rng(seed)
    loss = np.exp(-rate * STEPS) * (1 + noise * rng.standard_normal(len(STEPS)))
    table = pd.DataFrame({"step": STEPS, "loss": loss, "hessian_l11": np.nan, "hessian_l11_per_dim": np.nan,
                          "sharpness": np.nan})  # fmt: skip
    hessian = ["hessian_l11", "hessian_l11_per_dim", "sharpness"]
    table.loc[::50, hessian] = [l11 * (1 + 0.01 * seed), per_dim, 1.0]
    return SimpleNamespace(table=table, info={"seed": seed})


def experiment(adam_rotated_rate: float, rotated_noise: float = 1e-7, rotated_l11: float = 200.0) -> dict:
    """Runs of the six labels over 3 seeds; Adam's rate 0.3, AdaSGD and SGD+M 0.05 (seed-jittered)."""
    runs: dict = {}
    for seed in range(3):
        jitter = 1 + 0.02 * seed
        runs.setdefault("adam", []).append(run(0.3 * jitter, seed))
        runs.setdefault("adam_rotated", []).append(run(adam_rotated_rate * jitter, seed, rotated_l11, 2.0))
        for label in ("adasgd", "sgdm"):
            runs.setdefault(label, []).append(run(0.05 * jitter, seed))
            runs.setdefault(f"{label}_rotated", []).append(run(0.05 * jitter, seed + 10, noise=rotated_noise))
    return runs


def verdict(runs: dict) -> Outcome:
    return combine([c.outcome for c in rotation.test(runs, **CRITERION)])


def test_reproduced_when_rotation_takes_adams_edge_away():
    checks = rotation.test(experiment(adam_rotated_rate=0.05), **CRITERION)
    assert [c.outcome for c in checks] == [Outcome.REPRODUCED] * 7


def test_not_reproduced_when_rotated_adam_keeps_its_edge():
    checks = rotation.test(experiment(adam_rotated_rate=0.3), **CRITERION)
    assert checks[2].outcome is Outcome.NOT_REPRODUCED
    assert verdict(experiment(adam_rotated_rate=0.3)) is Outcome.NOT_REPRODUCED


def test_not_reproduced_when_sgd_changes_under_rotation_or_l11_does_not_grow():
    checks = rotation.test(experiment(0.05, rotated_noise=0.05), **CRITERION)
    assert checks[3].outcome is Outcome.NOT_REPRODUCED and checks[4].outcome is Outcome.NOT_REPRODUCED
    assert rotation.test(experiment(0.05, rotated_l11=5.0), **CRITERION)[6].outcome is Outcome.NOT_REPRODUCED


def test_statistics_equal_a_direct_recomputation():
    runs = experiment(adam_rotated_rate=0.05)
    checks = rotation.test(runs, **CRITERION)
    ratios = []
    for a, b in zip(runs["adam"], runs["sgdm"], strict=True):
        fa, fb = (float(np.mean(r.table["loss"].to_numpy()[-rotation.FINAL_STEPS:])) for r in (a, b))
        ratios.append(math.log10(fa / fb))
    assert math.isclose(checks[0].estimate.value, np.mean(ratios), rel_tol=1e-12)
    gaps = []
    for u, r in zip(runs["sgdm"], runs["sgdm_rotated"], strict=True):
        a, b = u.table["loss"].to_numpy(), r.table["loss"].to_numpy()
        gaps.append(float(np.max(np.abs(b - a) / a)))
    assert math.isclose(checks[3].estimate.value, np.mean(gaps), rel_tol=1e-12)
    grow = [math.log10(200 / 10)] * 3  # the seed jitter of l11 cancels in the ratio
    assert math.isclose(checks[6].estimate.value, np.mean(grow), rel_tol=1e-12)
    assert math.isclose(checks[5].estimate.value, 0.1, rel_tol=1e-12)


def test_one_seed_is_inconclusive():
    runs = {label: seeds[:1] for label, seeds in experiment(adam_rotated_rate=0.05).items()}
    assert verdict(runs) is Outcome.INCONCLUSIVE
