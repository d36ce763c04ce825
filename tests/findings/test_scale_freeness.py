"""The scale-freeness finding test on synthetic tables whose answer is known."""

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd

from optprobe.findings import Outcome, combine, scale_freeness

CRITERION = dict(same_rtol=1e-4, differ_min=0.1, gap_log10_max=-2.0, adamw_edge_log10=0.0)
STEPS = np.arange(200)


def run(rate: float, seed: int, wobble: float = 0.0, scale: float = 1.0) -> SimpleNamespace:
    """A seed run with ‖x_t‖ = exp(−rate t)(1 + wobble sin t) and loss = scale · ‖x_t‖²/2."""
    norm = np.exp(-rate * (1 + 0.01 * seed) * STEPS) * (1 + wobble * np.sin(STEPS))
    table = pd.DataFrame({"step": STEPS, "param_norm": norm, "loss": scale * 0.5 * norm**2})
    info = {"seed": seed, "run_config": {"task_options": {"loss_scale": scale} if scale != 1.0 else {}}}
    return SimpleNamespace(table=table, info=info)


def experiment(twin_wobble: float = 1e-7, l2_scaled_rate: float = 0.005, adamw_rate: float = 0.02) -> dict:
    """Three seeds of every label: scale-free twins equal up to ``twin_wobble``, GD's twin much faster."""
    runs: dict = {}
    for seed in range(3):
        add = lambda label, r: runs.setdefault(label, []).append(r)  # noqa: E731
        for name in ("adam", "adagrad", "lion"):
            add(name, run(0.05, seed))
            add(f"{name}_twin", run(0.05, seed, twin_wobble))
        add("gd", run(0.01, seed))
        add("gd_twin", run(0.5, seed))
        for name, rate in (("adamw", adamw_rate), ("adam_prox", adamw_rate)):
            add(name, run(rate, seed))
            add(f"{name}_x16", run(rate, seed, scale=16.0))
        add("adam_l2", run(0.002, seed))
        add("adam_l2_x16", run(l2_scaled_rate, seed, scale=16.0))
    return runs


def outcomes(runs: dict) -> list[Outcome]:
    return [c.outcome for c in scale_freeness.test(runs, **CRITERION)]


def test_reproduced_when_only_the_scale_free_methods_ignore_the_rescaling():
    assert outcomes(experiment()) == [Outcome.REPRODUCED] * 9


def test_not_reproduced_when_the_twins_differ_or_adam_l2_is_scale_free():
    assert outcomes(experiment(twin_wobble=0.3))[:3] == [Outcome.NOT_REPRODUCED] * 3
    assert outcomes(experiment(l2_scaled_rate=0.002))[7] is Outcome.NOT_REPRODUCED
    assert combine(outcomes(experiment(adamw_rate=0.001))) is Outcome.NOT_REPRODUCED


def test_statistics_equal_a_direct_recomputation():
    runs = experiment()
    checks = scale_freeness.test(runs, **CRITERION)
    gaps = []
    for a, b in zip(runs["adam"], runs["adam_twin"], strict=True):
        x, y = a.table["param_norm"].to_numpy(), b.table["param_norm"].to_numpy()
        gaps.append(np.max(np.abs(x - y) / x))
    assert math.isclose(checks[0].estimate.value, np.mean(gaps), rel_tol=1e-12)
    l2 = [np.max(np.abs(a.table["loss"] - b.table["loss"] / 16) / a.table["loss"])
          for a, b in zip(runs["adam_l2"], runs["adam_l2_x16"], strict=True)]  # fmt: skip
    assert math.isclose(checks[7].estimate.value, np.mean(l2), rel_tol=1e-12)
    closed = [max(math.log10(np.mean(runs[n][i].table["loss"].to_numpy()[-10:]) / runs[n][i].table["loss"][0])
                  for n in ("adam", "adagrad", "lion")) for i in range(3)]  # fmt: skip
    assert math.isclose(checks[4].estimate.value, np.mean(closed), rel_tol=1e-12)
