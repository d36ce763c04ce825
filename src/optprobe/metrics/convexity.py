"""Convexity gaps along the trajectory (Tran, Zhang & Cutkosky).

inst_gap(y) = ℓ(x_t, z_t) − ℓ(y, z_t) − ⟨g_t, x_t − y⟩ with y = x_{t−1} ("prev") or x* ("ref");
≤ 0 whenever ℓ(·, z_t) is convex. avg_gap is its window mean and exp_gap its EMA.
"""

from __future__ import annotations

from collections.abc import Sequence

from optprobe.metrics.base import Needs, StepData
from optprobe.metrics.registry import Setup, trajectory_family
from optprobe.metrics.windows import WindowedMetric, WindowStats


class ConvexityGap(WindowedMetric):
    """inst_gap, avg_gap and exp_gap against ``against`` = "prev" (x_{t−1}) or "ref" (x*)."""

    family, columns, emas = "convexity", ("inst_gap", "avg_gap", "exp_gap"), ("exp_gap",)

    def __init__(self, against: str = "prev", betas: Sequence[float] = (0.99,)) -> None:
        if against not in ("prev", "ref"):
            raise ValueError(f"against must be 'prev' or 'ref', got {against!r}")
        self.against = against
        self.needs = Needs(losses=frozenset({against}), dots=frozenset({("g", f"dx_{against}")}))
        self.window = WindowStats(betas)

    def update(self, data: StepData) -> dict[str, float]:
        gap = data.loss - data.loss_at(self.against) - data.dot("g", f"dx_{self.against}")
        self.window.add(gap)
        suffix = self.against
        return {
            f"inst_gap_{suffix}": gap,
            f"avg_gap_{suffix}": self.window.mean,
            **self.window.emas(f"exp_gap_{suffix}"),
        }


@trajectory_family("convexity")
def _convexity(setup: Setup) -> list[ConvexityGap]:
    return [ConvexityGap(target, setup.betas) for target in setup.targets]
