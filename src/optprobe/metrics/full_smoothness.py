"""Secant smoothness of F along the trajectory, as Zhang et al. (ICLR'20) estimate (L0, L1) smoothness.

full_smooth = ‖∇F(x_t) − ∇F(x_s)‖ / ‖x_t − x_s‖ between consecutive measurements s < t (``every`` steps
apart), paired with full_smooth_grad_norm = ‖∇F(x_s)‖, the gradient norm at the earlier point, as in the
condition ‖∇F(x) − ∇F(y)‖ ≤ (L0 + L1‖∇F(x)‖)‖x − y‖. ∇F is over the Probe's evaluation loader with F's
seed and masks (:meth:`~optprobe.evaluation.Evaluator.full_loss_and_grad`), not one minibatch: the
minibatch ``inst_smooth_prev`` also carries the batch's noise. Zhang et al.'s code (``eval_smooth``)
takes the gradients on a tenth of the training data; here F is the whole evaluation loader.
The metric keeps x_s and ∇F(x_s): two parameter copies. In a Probe, a step that also measures the
full-batch metrics takes ∇F(x_t) from the same pass (:class:`~optprobe.full_pass.FullPass`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from optprobe.errors import OptprobeError
from optprobe.evaluation import Batch, Evaluator, Params
from optprobe.full_pass import FullPass
from optprobe.metrics.base import PeriodicMetric, safe_ratio
from optprobe.metrics.registry import periodic_metric


@periodic_metric("full_smoothness")
class FullSmoothness(PeriodicMetric):
    """``full_smooth`` and ``full_smooth_grad_norm`` between this measurement and the previous one."""

    family, columns = "smoothness", ("full_smooth", "full_smooth_grad_norm")

    def __init__(self, every: int = 1) -> None:
        self.every = every
        self._loader: Iterable[Batch] | None = None
        self._seed = 0
        self._point: Params | None = None  # x_s
        self._grad: Params | None = None  # ∇F(x_s)

    def attach(self, eval_loader: Iterable[Batch] | None, seed: int) -> None:
        if eval_loader is None:
            raise OptprobeError("full_smoothness measures ∇F over the evaluation loader: pass eval_loader")
        self._loader, self._seed = eval_loader, seed

    def measures_f(self) -> bool:
        return True

    def reads_full_grad(self) -> bool:
        return True

    def compute(self, evaluator: Evaluator, params: Params, batch: Batch, step: int) -> dict[str, float]:
        full = FullPass(evaluator, params, self._attached_loader(), self._seed)  # a pass of its own
        return self.compute_shared(evaluator, params, batch, step, full)

    def compute_shared(
        self, evaluator: Evaluator, params: Params, batch: Batch, step: int, full: FullPass
    ) -> dict[str, float]:
        """The row at x_t = ``params``, with ∇F(x_t) from ``full`` (the Probe's pass, shared in the step)."""
        _, grad = full.loss_and_grad(params, self._attached_loader(), self._seed)
        row = {"full_smooth": math.nan, "full_smooth_grad_norm": math.nan}
        if self._point is not None and self._grad is not None:
            moved = _norm({k: p.detach() - self._point[k].to(p.device) for k, p in params.items()})
            changed = _norm({k: g - self._grad[k].to(g.device) for k, g in grad.items()})
            row = {"full_smooth": safe_ratio(changed, moved), "full_smooth_grad_norm": _norm(self._grad)}
        self._point = {k: p.detach().clone() for k, p in params.items()}
        self._grad = {k: g.detach().clone() for k, g in grad.items()}
        return row

    def _attached_loader(self) -> Iterable[Batch]:
        if self._loader is None:
            raise OptprobeError("full_smoothness needs the Probe's eval_loader (attach was not called)")
        return self._loader

    def state_dict(self) -> dict[str, Any]:
        return {"point": self._point, "grad": self._grad}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore x_s and ∇F(x_s) (moved to the parameters' device when first used)."""
        self._point, self._grad = state.get("point"), state.get("grad")


def _norm(tensors: Params) -> float:
    """‖v‖₂ of a dict of tensors, accumulated in float64."""
    return math.sqrt(sum(float(t.double().pow(2).sum()) for t in tensors.values()))
