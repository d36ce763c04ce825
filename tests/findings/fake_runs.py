"""Synthetic seed runs for finding tests: a step table and a run.json dict, no training."""

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


def table(columns: dict[str, np.ndarray]) -> pd.DataFrame:
    """Step rows 0..n−1 (event 'step') holding ``columns`` (NaN where a metric was not measured)."""
    n = len(next(iter(columns.values())))
    return pd.DataFrame({"step": np.arange(n), "epoch": 0, "event": "step", **columns})


def seeds(make, n: int = 3, **info: Any) -> list[FakeRun]:
    """``n`` runs whose tables are ``make(seed, rng)``, rng seeded by the seed 0..n−1."""
    return [FakeRun(make(s, np.random.default_rng(s)), {"seed": s, **info}) for s in range(n)]
