"""Update correlation and the random-scaling progress estimate (Tran, Zhang & Cutkosky).

update_corr = ⟨g_t, Δ_t⟩ is unbiased for ⟨∇F(x_t), Δ_t⟩ because Δ_t does not depend on z_t.
update_corr_rs = w_t ⟨g_t, Δ_t / s_t⟩ for a random-scaling step x_t = x_{t−1} + s_t u_t (w_t its
importance weight, 1 for s_t ~ Exp(1)); its cumulative sum tracks the cumulative
loss_diff = ℓ(x_t, z_t) − ℓ(x_{t−1}, z_t).

The cumulative sums add the measured steps only: with ``ProbeConfig(every=k)`` they are
Σ_{t ∈ {0, k, 2k, …}}, one step in k (each still the one-step Δ_t = x_t − x_{t−1}), not the sum over the
steps between. Both sides of the random-scaling comparison skip the same steps, so they stay comparable.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from optprobe.metrics.base import Needs, StepData, TrajectoryMetric, safe_ratio
from optprobe.metrics.registry import Setup, trajectory_family


class UpdateCorrelation(TrajectoryMetric):
    """update_corr, update_corr_rs, loss_diff and their cumulative sums Σ over measured steps only."""

    family = "correlation"
    columns = ("update_corr", "update_corr_rs", "loss_diff")
    columns += tuple(f"cum_{name}" for name in columns)

    def __init__(self, per_layer: bool = False) -> None:
        self.per_layer = per_layer
        self.needs = Needs(losses=frozenset({"prev"}), dots=frozenset({("g", "dx_prev")}))
        self.cumulative = {"update_corr": 0.0, "update_corr_rs": 0.0, "loss_diff": 0.0}

    def update(self, data: StepData) -> dict[str, float]:
        corr = data.dot("g", "dx_prev")
        values = {
            "update_corr": corr,
            "update_corr_rs": data.scale_weight * safe_ratio(corr, data.scale),
            "loss_diff": data.loss - data.loss_at("prev"),
        }
        for name, value in values.items():
            if math.isfinite(value):
                self.cumulative[name] += value
        row = {**values, **{f"cum_{name}": total for name, total in self.cumulative.items()}}
        if self.per_layer:
            pairs = zip(data.layers, data.layer_dots("g", "dx_prev"), strict=True)
            row.update({f"update_corr/{layer}": value for layer, value in pairs})
        return row

    def state_dict(self) -> dict[str, Any]:
        return {"cumulative": dict(self.cumulative)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.cumulative = {k: float(v) for k, v in state["cumulative"].items()}


@trajectory_family("correlation")
def _correlation(setup: Setup) -> UpdateCorrelation:
    return UpdateCorrelation(setup.per_layer)
