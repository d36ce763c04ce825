"""Local convexity of deep-learning paths (Tran, Zhang & Cutkosky, Sec. 3.1, Fig. 2; App. D.7).

Finding: along SGDM and AdamW paths on CIFAR-10 and GPT-2 the averaged convexity gaps against x_{t−1}
are consistently negative ("locally convex on average"), though single steps can have positive gaps.
Statistics: per seed the mean gap ḡ = (1/T) Σ_t inst_gap_t, and the share of averaged gaps that are < 0:
the epoch-end avg_gap (reset each epoch, as the paper does) of a multi-epoch run, exp_gap at every step
of a single-epoch (streaming) run, as the paper does for its language models.
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


def averaged_gaps(run: SeedRun) -> pd.Series:
    """The averaged gaps the paper plots: epoch-end avg_gap_prev per epoch for a multi-epoch run, else
    exp_gap_prev_β at every step (its sign does not depend on its zero start's bias)."""
    table = run.table
    steps = table[table["event"] == "step"] if "event" in table.columns else table
    epochs = steps["epoch"].nunique() if "epoch" in steps.columns else 1
    if epochs > 1:
        if "avg_gap_prev" not in steps.columns:
            return pd.Series(dtype=float)
        last = steps.dropna(subset=["avg_gap_prev"]).groupby("epoch").tail(1)
        return pd.Series(last["avg_gap_prev"].to_numpy(float), index=last["epoch"].to_numpy())
    return series(steps, f"exp_gap_prev_{BETA:g}")


def negative_share(run: SeedRun) -> float:
    """Share of :func:`averaged_gaps` that are < 0 (NaN when there are none)."""
    gaps = averaged_gaps(run)
    return float((gaps < 0).mean()) if len(gaps) else math.nan


def _windows(seeds: Sequence[SeedRun]) -> str:
    sizes = [len(averaged_gaps(run)) for run in seeds]
    multi = bool(seeds) and seeds[0].table.get("epoch", pd.Series([0])).nunique() > 1
    kind = "epochs (epoch-end avg_gap)" if multi else f"steps (exp_gap, β = {BETA:g})"
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
