"""Finding verdicts: a paper's finding as statistics over an experiment's runs, judged across seeds.

A finding test reads the tables of an experiment's runs (every seed of every run label) and returns
one or more :class:`Check`: a named statistic, its :class:`Estimate` (mean and 95% interval across
seeds, or the estimator's own sampling interval), and a :class:`Criterion` it must meet. A check is
"reproduced" when the whole interval meets the criterion, "not reproduced" when the whole interval
violates it, and "inconclusive" otherwise; a finding is reproduced when every one of its checks is.
Nothing here is written by hand: every verdict is computed from the tables.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol

import numpy as np
import pandas as pd

#: Level of every interval across seeds.
CONFIDENCE = 0.95


class Outcome(str, Enum):
    """The four verdicts of a finding (and of each of its checks)."""

    REPRODUCED = "reproduced"
    NOT_REPRODUCED = "not reproduced"
    INCONCLUSIVE = "inconclusive"
    NOT_MEASURED = "not measured"

    def __str__(self) -> str:
        return self.value


class SeedRun(Protocol):
    """One seed of one run: its metrics table and its run.json (``report.runs.Run`` is one)."""

    table: pd.DataFrame
    info: Mapping[str, Any]


#: run label → its runs, one per seed, in seed order.
Runs = Mapping[str, Sequence[SeedRun]]


@dataclass(frozen=True)
class Estimate:
    """A statistic's value with a ``CONFIDENCE`` interval [low, high] from ``n`` samples (seeds)."""

    value: float
    low: float
    high: float
    n: int

    @property
    def measured(self) -> bool:
        return math.isfinite(self.value)


def across_seeds(values: Sequence[float], confidence: float = CONFIDENCE) -> Estimate:
    """Mean of per-seed values with a Student-t interval, mean ± t_{n−1}·s/√n.

    Non-finite values are dropped; one value gives an unbounded interval (one seed cannot separate a
    statistic from its criterion), none gives NaN (not measured).
    """
    from scipy.stats import t as student

    x = np.asarray([v for v in values if math.isfinite(v)], float)
    if len(x) == 0:
        return Estimate(math.nan, math.nan, math.nan, 0)
    if len(x) == 1:
        return Estimate(float(x[0]), -math.inf, math.inf, 1)
    mean, sem = float(x.mean()), float(x.std(ddof=1) / math.sqrt(len(x)))
    half = float(student.ppf(0.5 + confidence / 2, len(x) - 1)) * sem
    return Estimate(mean, mean - half, mean + half, len(x))


@dataclass(frozen=True)
class Criterion:
    """What a statistic must satisfy: ``< bound``, ``> bound`` or ``in [low, high]``."""

    op: str
    bound: float | tuple[float, float]

    def __post_init__(self) -> None:
        if self.op not in ("<", ">", "in"):
            raise ValueError(f"criterion op must be '<', '>' or 'in', got {self.op!r}")

    def judge(self, est: Estimate) -> Outcome:
        """Reproduced when the whole interval meets the criterion; not reproduced when none of it does."""
        if not est.measured:
            return Outcome.NOT_MEASURED
        if self.op == "in":
            low, high = self.bound  # type: ignore[misc]
            if low <= est.low and est.high <= high:
                return Outcome.REPRODUCED
            return Outcome.NOT_REPRODUCED if est.high < low or est.low > high else Outcome.INCONCLUSIVE
        bound = float(self.bound)  # type: ignore[arg-type]
        inside, outside = (est.high < bound, est.low >= bound) if self.op == "<" else (
            est.low > bound, est.high <= bound
        )
        return Outcome.REPRODUCED if inside else Outcome.NOT_REPRODUCED if outside else Outcome.INCONCLUSIVE

    def __str__(self) -> str:
        if self.op == "in":
            low, high = self.bound  # type: ignore[misc]
            return f"in [{low:g}, {high:g}]"
        return f"{self.op} {float(self.bound):g}"  # type: ignore[arg-type]


@dataclass(frozen=True)
class Check:
    """One statistic of a finding, its estimate across seeds, and the criterion it is judged by."""

    statistic: str
    estimate: Estimate
    criterion: Criterion
    detail: str = ""

    @property
    def outcome(self) -> Outcome:
        return self.criterion.judge(self.estimate)


def combine(outcomes: Sequence[Outcome]) -> Outcome:
    """A finding's verdict from its checks': any not reproduced → not reproduced; all reproduced →
    reproduced; otherwise not measured if any check is, else inconclusive."""
    if not outcomes:
        return Outcome.NOT_MEASURED
    if Outcome.NOT_REPRODUCED in outcomes:
        return Outcome.NOT_REPRODUCED
    if all(o is Outcome.REPRODUCED for o in outcomes):
        return Outcome.REPRODUCED
    return Outcome.NOT_MEASURED if Outcome.NOT_MEASURED in outcomes else Outcome.INCONCLUSIVE


@dataclass(frozen=True)
class FindingResult:
    """An experiment's finding, the checks that test it, and the combined verdict."""

    experiment: str
    finding: str
    checks: tuple[Check, ...]

    @property
    def outcome(self) -> Outcome:
        return combine([c.outcome for c in self.checks])


#: A finding test: the experiment's runs and its criterion parameters (the experiment file's
#: ``[criterion]`` table, passed as keyword arguments) → its checks.
FindingTest = Callable[..., list[Check]]


def per_seed(runs: Sequence[SeedRun], statistic: Callable[[SeedRun], float]) -> Estimate:
    """:func:`across_seeds` of ``statistic`` evaluated on each seed's run."""
    return across_seeds([float(statistic(run)) for run in runs])
