"""Running statistics over a window of steps: mean, max and exponential moving averages.

A window is an epoch (reset by the Probe at each epoch start) or the whole run. Non-finite values
are skipped, so one degenerate step leaves a NaN in its own row but does not poison the window.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from optprobe.metrics.base import TrajectoryMetric


class WindowStats:
    """mean_t, max_t and e_t = β e_{t−1} + (1−β) v_t (e_0 = 0, no bias correction) of a scalar stream."""

    def __init__(self, betas: Sequence[float]) -> None:
        self.betas = tuple(betas)
        self.reset()

    def reset(self) -> None:
        self.total = 0.0
        self.count = 0
        self.maximum = -math.inf
        self.ema = [0.0] * len(self.betas)

    def add(self, value: float) -> None:
        if not math.isfinite(value):
            return
        self.total += value
        self.count += 1
        self.maximum = max(self.maximum, value)
        self.ema = [b * e + (1.0 - b) * value for b, e in zip(self.betas, self.ema, strict=True)]

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else math.nan

    @property
    def max(self) -> float:
        return self.maximum if self.count else math.nan

    def emas(self, prefix: str) -> dict[str, float]:
        """``{f"{prefix}_{β}": e_t}`` for each β (NaN before the first finite value)."""
        return {
            f"{prefix}_{b:g}": (e if self.count else math.nan)
            for b, e in zip(self.betas, self.ema, strict=True)
        }

    def state_dict(self) -> dict[str, Any]:
        return {"total": self.total, "count": self.count, "maximum": self.maximum, "ema": list(self.ema)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.total, self.count = float(state["total"]), int(state["count"])
        self.maximum, self.ema = float(state["maximum"]), [float(e) for e in state["ema"]]


class WindowedMetric(TrajectoryMetric):
    """A trajectory metric whose state is one :class:`WindowStats` (restarted with each window)."""

    window: WindowStats

    def reset_window(self) -> None:
        self.window.reset()

    def state_dict(self) -> dict[str, Any]:
        return {"window": self.window.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.window.load_state_dict(state["window"])
