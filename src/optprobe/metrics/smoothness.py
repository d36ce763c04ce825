"""Instantaneous smoothness along the trajectory (Tran, Zhang & Cutkosky).

inst_smooth(y) = ‖∇ℓ(x_t, z_t) − ∇ℓ(y, z_t)‖ / ‖x_t − y‖, a lower bound on the Lipschitz constant of
∇ℓ(·, z_t) on the segment; max_smooth and exp_smooth are its window max and EMA.
"""

from __future__ import annotations

from collections.abc import Sequence

from optprobe.metrics.base import Needs, StepData, safe_ratio
from optprobe.metrics.registry import Setup, trajectory_family
from optprobe.metrics.windows import WindowedMetric, WindowStats


class Smoothness(WindowedMetric):
    """inst_smooth, max_smooth, exp_smooth against "prev" or "ref"; per layer when asked."""

    family, columns, emas = "smoothness", ("inst_smooth", "max_smooth", "exp_smooth"), ("exp_smooth",)

    def __init__(
        self, against: str = "prev", betas: Sequence[float] = (0.99,), per_layer: bool = False
    ) -> None:
        if against not in ("prev", "ref"):
            raise ValueError(f"against must be 'prev' or 'ref', got {against!r}")
        self.against = against
        self.per_layer = per_layer
        dg, dx = f"dg_{against}", f"dx_{against}"
        self._pair = (dg, dx)
        self.needs = Needs(grads=frozenset({against}), dots=frozenset({(dg, dg), (dx, dx)}))
        self.window = WindowStats(betas)

    def update(self, data: StepData) -> dict[str, float]:
        dg, dx = self._pair
        inst = safe_ratio(data.norm(dg), data.norm(dx))
        self.window.add(inst)
        suffix = self.against
        row = {
            f"inst_smooth_{suffix}": inst,
            f"max_smooth_{suffix}": self.window.max,
            **self.window.emas(f"exp_smooth_{suffix}"),
        }
        if self.per_layer:
            pairs = zip(data.layers, data.layer_norms(dg), data.layer_norms(dx), strict=True)
            row.update({f"inst_smooth_{suffix}/{layer}": safe_ratio(a, b) for layer, a, b in pairs})
        return row


@trajectory_family("smoothness")
def _smoothness(setup: Setup) -> list[Smoothness]:
    return [Smoothness(target, setup.betas, setup.per_layer) for target in setup.targets]
