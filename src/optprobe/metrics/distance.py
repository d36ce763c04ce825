"""Distance from initialisation: dist_init = ‖x_t − x_0‖ and grad_dot_init = ⟨g_t, x_t − x_0⟩.

x_0 is x at the Probe's first step (kept once, saved in its checkpoints). grad_dot_init > 0 means the
minibatch gradient points away from x_0, so a gradient step moves x_t back towards its initialisation.
"""

from __future__ import annotations

from optprobe.metrics.base import Needs, StepData, TrajectoryMetric
from optprobe.metrics.registry import Setup, trajectory_family


class DistanceFromInit(TrajectoryMetric):
    """dist_init and grad_dot_init; ``dist_init/<layer>`` and ``grad_dot_init/<layer>`` per layer."""

    family, columns = "distance", ("dist_init", "grad_dot_init")

    def __init__(self, per_layer: bool = False) -> None:
        self.per_layer = per_layer
        self.needs = Needs(dots=frozenset({("dx_init", "dx_init"), ("g", "dx_init")}))

    def update(self, data: StepData) -> dict[str, float]:
        row = {"dist_init": data.norm("dx_init"), "grad_dot_init": data.dot("g", "dx_init")}
        if self.per_layer:
            norms = zip(data.layers, data.layer_norms("dx_init"), strict=True)
            dots = zip(data.layers, data.layer_dots("g", "dx_init"), strict=True)
            row.update({f"dist_init/{layer}": value for layer, value in norms})
            row.update({f"grad_dot_init/{layer}": value for layer, value in dots})
        return row


@trajectory_family("distance")
def _distance(setup: Setup) -> DistanceFromInit:
    return DistanceFromInit(setup.per_layer)
