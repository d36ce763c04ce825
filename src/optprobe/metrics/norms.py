"""Norms along the trajectory: ‖g_t‖₂, ‖g_t‖₁, ‖g_t‖∞, ‖x_t‖₂ and ‖Δ_t‖₂ (global, per layer on request)."""

from __future__ import annotations

from optprobe.metrics.base import Needs, StepData, TrajectoryMetric
from optprobe.metrics.registry import Setup, trajectory_family


class Norms(TrajectoryMetric):
    """grad_norm, grad_l1, grad_linf, param_norm, update_norm."""

    family, columns = "norms", ("grad_norm", "grad_l1", "grad_linf", "param_norm", "update_norm")

    def __init__(self, per_layer: bool = False) -> None:
        self.per_layer = per_layer
        self.needs = Needs(
            dots=frozenset({("g", "g"), ("x", "x"), ("dx_prev", "dx_prev")}),
            l1=frozenset({"g"}),
            linf=frozenset({"g"}),
        )

    def update(self, data: StepData) -> dict[str, float]:
        row = {
            "grad_norm": data.norm("g"),
            "grad_l1": data.l1["g"].total,
            "grad_linf": data.linf["g"].total,
            "param_norm": data.norm("x"),
            "update_norm": data.norm("dx_prev"),
        }
        if self.per_layer:
            for name, vector in (("grad_norm", "g"), ("param_norm", "x"), ("update_norm", "dx_prev")):
                pairs = zip(data.layers, data.layer_norms(vector), strict=True)
                row.update({f"{name}/{layer}": value for layer, value in pairs})
        return row


@trajectory_family("norms")
def _norms(setup: Setup) -> Norms:
    return Norms(setup.per_layer)
