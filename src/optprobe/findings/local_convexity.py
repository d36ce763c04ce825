"""Local convexity of deep-learning paths (Tran, Zhang & Cutkosky, Sec. 3.1, Fig. 2; App. D.7).

Finding: along SGDM and AdamW paths on CIFAR-10 and GPT-2 the averaged convexity gaps against x_{t−1}
are consistently negative ("locally convex on average"), though single steps can have positive gaps.
Statistics: per seed the mean gap ḡ = (1/T) Σ_t inst_gap_t, and the share of averaged gaps that are < 0:
the epoch-end avg_gap when averages restart each epoch (the paper's image runs), else exp_gap at every
step (its language models, whose averages never restart).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from optprobe.findings.base import Check, Criterion, Runs, SeedRun, per_seed
from optprobe.report.verdicts import series

#: β of the exponential gap average read for streaming runs (the paper's choice).
BETA = 0.99


def mean_gap(run: SeedRun, against: str = "prev") -> float:
    """ḡ: mean of inst_gap_<against> over every measured step of one run."""
    return float(series(run.table, f"inst_gap_{against}").mean())


def positive_share(run: SeedRun, against: str = "prev") -> float:
    """Share of measured steps with inst_gap_<against> > 0 (NaN without gaps)."""
    gaps = series(run.table, f"inst_gap_{against}")
    return float((gaps > 0).mean()) if len(gaps) else math.nan


def resets_each_epoch(run: SeedRun) -> bool:
    """Whether the run's averages restart at each epoch (probe window "epoch" over more than one epoch)."""
    window = (run.info.get("probe_config") or {}).get("window", "epoch")
    steps = _steps(run.table)
    return window == "epoch" and "epoch" in steps.columns and steps["epoch"].nunique() > 1


def averaged_gaps(run: SeedRun) -> pd.Series:
    """The averaged gaps the paper plots: epoch-end avg_gap_prev per epoch when the averages restart
    each epoch, else exp_gap_prev_β at every step (its sign does not depend on its zero start's bias)."""
    steps = _steps(run.table)
    if not resets_each_epoch(run):
        return series(steps, f"exp_gap_prev_{BETA:g}")
    if "avg_gap_prev" not in steps.columns:
        return pd.Series(dtype=float)
    last = steps.dropna(subset=["avg_gap_prev"]).groupby("epoch").tail(1)
    return pd.Series(last["avg_gap_prev"].to_numpy(float), index=last["epoch"].to_numpy())


def _steps(table: pd.DataFrame) -> pd.DataFrame:
    return table[table["event"] == "step"] if "event" in table.columns else table


def negative_share(run: SeedRun) -> float:
    """Share of :func:`averaged_gaps` that are < 0 (NaN when there are none)."""
    gaps = averaged_gaps(run)
    return float((gaps < 0).mean()) if len(gaps) else math.nan


def _windows(seeds: Sequence[SeedRun]) -> str:
    sizes = [len(averaged_gaps(run)) for run in seeds]
    per_epoch = bool(seeds) and resets_each_epoch(seeds[0])
    kind = "epochs (epoch-end avg_gap)" if per_epoch else f"steps (exp_gap, β = {BETA:g}, never reset)"
    return f"{kind} per seed: {sizes}"


def test(runs: Runs, *, mean_gap_below: float, negative_share_above: float) -> list[Check]:
    """Per run: mean inst_gap_prev < ``mean_gap_below``; share of negative averaged gaps >
    ``negative_share_above``."""
    checks = []
    for label, seeds in runs.items():
        positive = per_seed(seeds, positive_share)
        checks.append(
            Check(
                f"{label}: mean convexity gap against x_(t−1) over all steps",
                per_seed(seeds, mean_gap),
                Criterion("<", mean_gap_below),
                f"{len(seeds)} seeds; single steps have inst_gap > 0 at {_percent(positive.value)} of steps "
                "(mean over seeds)",
            )
        )
        checks.append(
            Check(
                f"{label}: share of averaged gaps < 0",
                per_seed(seeds, negative_share),
                Criterion(">", negative_share_above),
                f"{len(seeds)} seeds; {_windows(seeds)}",
            )
        )
    return checks


def _percent(value: float) -> str:
    return f"{value:.0%}" if np.isfinite(value) else "n/a"
