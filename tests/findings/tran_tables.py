"""Synthetic seed runs for the Tran et al. finding tests: a table and a run.json dict, no training."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd


@dataclass
class FakeRun:
    """A seed run as findings read it: ``.table`` and ``.info``."""

    table: pd.DataFrame
    info: dict[str, Any] = field(default_factory=dict)


def step_table(columns: dict[str, np.ndarray], epochs: int = 1) -> pd.DataFrame:
    """Step rows (event 'step', steps 0..n−1 split evenly into ``epochs``) holding ``columns``, plus one
    epoch_end row per epoch with NaN in every metric, as the Probe writes them."""
    n = len(next(iter(columns.values())))
    epoch = np.arange(n) * epochs // n
    steps = pd.DataFrame({"step": np.arange(n), "epoch": epoch, "event": "step", **columns})
    ends = steps.groupby("epoch", as_index=False)["step"].max().assign(event="epoch_end")
    return pd.concat([steps, ends], ignore_index=True).sort_values(["step", "event"], kind="stable")


def seeds(make, n: int = 3, **info: Any) -> list[FakeRun]:
    """``n`` runs whose tables are ``make(rng)`` with rng seeded 0..n−1."""
    return [FakeRun(make(np.random.default_rng(s)), {"seed": s, **info}) for s in range(n)]
