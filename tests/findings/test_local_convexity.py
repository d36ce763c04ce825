"""The local-convexity finding on synthetic tables: averaged gaps against x_(t−1) consistently negative."""

from __future__ import annotations

import numpy as np
import pandas as pd

from optprobe.experiments.registry import get_experiment
from optprobe.findings import Outcome
from optprobe.findings.local_convexity import averaged_gaps
from optprobe.findings.local_convexity import test as finding

from .tran_tables import seeds, step_table

CRITERION = get_experiment("local_convexity").criterion  # the shipped experiment file's numbers


def _ema(x: np.ndarray, beta: float = 0.99) -> np.ndarray:
    out, e = np.empty_like(x), 0.0
    for i, v in enumerate(x):
        e = beta * e + (1 - beta) * (0.0 if np.isnan(v) else v)
        out[i] = e
    return out


def gap_table(rng, mean: float, epochs: int, steps: int = 240) -> pd.DataFrame:
    """inst_gap ~ N(mean, 0.01²) (so single steps are often positive), its per-epoch running mean and EMA."""
    gap = rng.normal(mean, 0.01, steps)
    gap[0] = np.nan
    epoch = np.arange(steps) * epochs // steps
    avg = pd.Series(gap).groupby(epoch).transform(lambda s: s.expanding().mean()).to_numpy()
    return step_table({"loss": np.ones(steps), "inst_gap_prev": gap, "avg_gap_prev": avg,
                       "exp_gap_prev_0.99": _ema(gap)}, epochs)  # fmt: skip


def test_negative_averaged_gaps_with_positive_steps_reproduce():
    streaming = {"window": "none"}  # averages never restart, though the run makes 3 passes
    runs = {"cnn": seeds(lambda rng: gap_table(rng, -0.01, epochs=8)),
            "gpt": seeds(lambda rng: gap_table(rng, -0.01, epochs=3), probe_config=streaming)}  # fmt: skip
    checks = finding(runs, **CRITERION)
    assert [c.outcome for c in checks] == [Outcome.REPRODUCED] * 4
    assert "epoch-end avg_gap" in checks[1].detail and "exp_gap" in checks[3].detail
    assert "inst_gap > 0 at 1" in checks[0].detail  # ~16% of N(−0.01, 0.01²) steps are positive


def test_positive_gaps_are_not_reproduced():
    checks = finding({"cnn": seeds(lambda rng: gap_table(rng, 0.01, epochs=8))}, **CRITERION)
    assert [c.outcome for c in checks] == [Outcome.NOT_REPRODUCED] * 2


def test_statistics_are_direct_recomputations():
    runs = seeds(lambda rng: gap_table(rng, -0.002, epochs=6))
    mean_check, share_check = finding({"cnn": runs}, **CRITERION)
    means, shares = [], []
    for run in runs:
        steps = run.table[run.table["event"] == "step"]
        means.append(np.nanmean(steps["inst_gap_prev"]))
        epoch_means = steps.groupby("epoch")["inst_gap_prev"].mean()  # the epoch-end avg_gap
        shares.append(float((epoch_means < 0).mean()))
        assert np.allclose(averaged_gaps(run).to_numpy(), epoch_means.to_numpy(), rtol=1e-12)
    assert np.isclose(mean_check.estimate.value, np.mean(means), rtol=1e-12)
    assert np.isclose(share_check.estimate.value, np.mean(shares), rtol=1e-12)


def test_streaming_share_counts_every_steps_ema_sign():
    """Averages that never restart (window "none", here over 2 passes) are read as exp_gap at every step."""
    runs = seeds(lambda rng: gap_table(rng, 0.0, epochs=2), probe_config={"window": "none"})
    _, share_check = finding({"gpt": runs}, **CRITERION)
    direct = [float((np.nan_to_num(r.table.loc[r.table["event"] == "step", "exp_gap_prev_0.99"],
                                   nan=1.0) < 0).mean()) for r in runs]  # fmt: skip
    assert np.isclose(share_check.estimate.value, np.mean(direct), rtol=1e-12)
