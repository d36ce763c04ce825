"""Consecutive-update cosine: update_cos = cos(Δ_t, Δ_{t−1}) = ⟨Δ_t, Δ_{t−1}⟩ / (‖Δ_t‖ ‖Δ_{t−1}‖).

Near −1 the iterates bounce across a ravine (the steep directions dominate the step), near +1 they
travel along it; with Δ_{t−1} = x_{t−1} − x_{t−2} (NaN at the first two steps or for a zero update).
"""

from __future__ import annotations

from optprobe.metrics.base import Needs, StepData, TrajectoryMetric, safe_ratio
from optprobe.metrics.registry import Setup, trajectory_family


class UpdateCosine(TrajectoryMetric):
    """update_cos, and ``update_cos/<layer>`` per layer when asked."""

    family, columns = "update_cosine", ("update_cos",)

    def __init__(self, per_layer: bool = False) -> None:
        self.per_layer = per_layer
        pairs = {("dx_prev", "prev_dx"), ("dx_prev", "dx_prev"), ("prev_dx", "prev_dx")}
        self.needs = Needs(dots=frozenset(pairs))

    def update(self, data: StepData) -> dict[str, float]:
        both = data.norm("dx_prev") * data.norm("prev_dx")
        row = {"update_cos": safe_ratio(data.dot("dx_prev", "prev_dx"), both)}
        if self.per_layer:
            columns = zip(
                data.layers,
                data.layer_dots("dx_prev", "prev_dx"),
                data.layer_norms("dx_prev"),
                data.layer_norms("prev_dx"),
                strict=True,
            )
            row.update({f"update_cos/{layer}": safe_ratio(d, a * b) for layer, d, a, b in columns})
        return row


@trajectory_family("update_cosine")
def _update_cosine(setup: Setup) -> UpdateCosine:
    return UpdateCosine(setup.per_layer)
