"""The relaxed-smoothness finding test on synthetic tables whose answer is known."""

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd

from optprobe.findings import Outcome, relaxed_smoothness
from optprobe.report.verdicts import check_relaxed_smoothness

CRITERION = dict(min_gain=0.1, clip_edge_log10=0.0, sign_edge_log10=0.0)
STEPS = np.arange(60)


def run(seed: int, l1: float = 2.0, rate: float = 0.05, blow_up: bool = False, lr: float = 1.0,
        clip: float | None = None) -> SimpleNamespace:  # fmt: skip
    """Gradient norms g_t decaying from 1 with noise; L_t = 1 + l1 g_t − noise; full loss exp(−rate t)."""
    rng = np.random.default_rng(seed)
    g = np.exp(-0.03 * STEPS) * (1 + 0.3 * rng.random(len(STEPS)))
    smooth = 1 + l1 * g - rng.exponential(0.05, len(STEPS))
    full = np.exp(-rate * (1 + 0.05 * seed) * STEPS)
    if blow_up:
        full = full * np.exp(0.5 * STEPS)
    table = pd.DataFrame({"step": STEPS, "full_grad_norm": g, "grad_norm": g, "inst_smooth_prev": smooth,
                          "full_loss": full})  # fmt: skip
    options = {"clip": clip} if clip is not None else {}
    info = {"seed": seed, "lr": lr, "run_config": {"optimizer_options": options}}
    return SimpleNamespace(table=table, info=info)


def experiment(l1: float = 2.0, sign_rate: float = 0.08, clipped_blows_up: bool = False) -> dict:
    return {
        "sgd": [run(s, l1) for s in range(3)],
        "sgd_large_lr": [run(s, blow_up=True, lr=2.0) for s in range(3)],
        "clipped_sgd_large_lr": [run(s, blow_up=clipped_blows_up, lr=2.0, clip=1.0) for s in range(3)],
        "generalized_signsgd": [run(s, rate=sign_rate) for s in range(3)],
    }


def outcomes(runs: dict) -> list[Outcome]:
    return [c.outcome for c in relaxed_smoothness.test(runs, **CRITERION)]


def test_reproduced_when_smoothness_tracks_the_gradient_norm_and_clipping_and_sign_win():
    assert outcomes(experiment()) == [Outcome.REPRODUCED] * 3


def test_not_reproduced_when_smoothness_is_flat_or_clipping_does_not_help():
    assert outcomes(experiment(l1=0.0))[0] is Outcome.NOT_REPRODUCED
    assert outcomes(experiment(clipped_blows_up=True))[1] is Outcome.NOT_REPRODUCED
    assert outcomes(experiment(sign_rate=0.02))[2] is Outcome.NOT_REPRODUCED


def test_statistics_equal_a_direct_recomputation():
    runs = experiment()
    checks = relaxed_smoothness.test(runs, **CRITERION)
    gains = [check_relaxed_smoothness(r.table, r.info).value for r in runs["sgd"]]
    assert math.isclose(checks[0].estimate.value, np.mean(gains), rel_tol=1e-12)
    ratios = []
    for c, s in zip(runs["clipped_sgd_large_lr"], runs["sgd_large_lr"], strict=True):
        fc, fs = (min(r.table["full_loss"].iloc[-1], r.table["full_loss"].iloc[0]) for r in (c, s))
        ratios.append(math.log10(fc / fs))
    assert math.isclose(checks[1].estimate.value, np.mean(ratios), rel_tol=1e-12)
    threshold = 1.0 / 2.0
    fraction = np.mean([np.mean(r.table["grad_norm"] > threshold) for r in runs["clipped_sgd_large_lr"]])
    assert f"clipped on {100 * fraction:.0f}% of the steps" in checks[1].detail


def test_the_secant_smoothness_of_f_is_preferred_over_the_minibatch_one():
    """With full_smooth measured (Zhang et al.'s estimator), the fit uses it, not inst_smooth_prev."""
    runs = experiment(l1=0.0)  # the minibatch L_t is flat: not reproduced from it
    for r in runs["sgd"]:
        g = r.table["full_grad_norm"].to_numpy()
        r.table["full_smooth_grad_norm"] = g
        r.table["full_smooth"] = 1 + 2.0 * g  # F's secant smoothness grows with ‖∇F‖
    check = relaxed_smoothness.test(runs, **CRITERION)[0]
    assert check.outcome is Outcome.REPRODUCED
    assert "L_t = full_smooth against g_t = full_smooth_grad_norm" in check.detail
