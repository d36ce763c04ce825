"""Full-batch metrics: F(x_t), ‖∇F(x_t)‖, gradient noise, convexity ratio and PL ratio.

F is the example-weighted mean loss over the evaluation loader's chunks, ∇F accumulated chunk by chunk.
F is one function of x: chunk c draws its dropout masks from the seed ``chunk_seed(seed, c)`` at every
point, with or without the gradient; in train mode each chunk's BatchNorm uses that chunk's statistics,
in eval mode (the Probe's ``eval_mode``) each point its own buffers (x*: the reference's, see
:mod:`optprobe.reference`). So F(x*) is computed once.

* grad_std = ‖g_t − ∇F(x_t)‖
* convexity_ratio = Σ_{i≤t} ⟨∇F(x_i), x_i − x*⟩ / Σ_{i≤t} (F(x_i) − F(x*)) over measurement points:
  ≥ 1 where the convex-analysis inequality holds, in (0, 1) weak quasi-convexity, < 0 unexplained.
* pl_ratio = ½‖∇F(x_t)‖² / (F(x_t) − F(x*))
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import Tensor

from optprobe.evaluation import Batch, Evaluator, Params
from optprobe.full_pass import FullPass
from optprobe.metrics.base import safe_ratio
from optprobe.reductions import layer_of


class FullBatchMetrics:
    """Evaluates F and ∇F over ``loader`` and keeps the cumulative sums of the convexity ratio."""

    family = "fullbatch"
    columns = ("full_loss", "full_grad_norm", "grad_std", "ref_full_loss", "convexity_ratio", "pl_ratio")

    def __init__(
        self,
        loader: Iterable[Batch],
        reference: Params | None = None,
        seed: int = 0,
        per_layer: bool = False,
        reference_buffers: Params | None = None,
    ) -> None:
        self.loader = loader
        self.reference = reference
        self.reference_buffers = reference_buffers
        self.seed = seed
        self.per_layer = per_layer
        self.ref_loss: float | None = None
        self.sum_inner = 0.0
        self.sum_excess = 0.0

    def measure(
        self,
        evaluator: Evaluator,
        params: Params,
        grads: Mapping[str, Tensor] | None,
        layers: list[str],
        full: FullPass | None = None,
    ) -> dict[str, float]:
        """Metrics at ``params``; ``grads`` is g_t of the same point when there is one (for grad_std);
        F and ∇F come from ``full``, the step's shared pass, when given."""
        full = full or FullPass(evaluator, params, self.loader, self.seed)
        loss_t, full_grad = full.loss_and_grad(params, self.loader, self.seed)
        loss = float(loss_t)
        sums = self._per_tensor_sums(evaluator, params, full_grad, grads)
        grad_sq = float(sums[:, 0].sum())
        row = {"full_loss": loss, "full_grad_norm": math.sqrt(grad_sq)}
        if grads is not None:
            row["grad_std"] = math.sqrt(float(sums[:, 1].sum()))
        if self.reference is not None:
            row.update(self._against_reference(evaluator, loss, grad_sq, float(sums[:, -1].sum())))
        if self.per_layer:
            tensor_layers = [layer_of(k) for k in full_grad]
            for layer in dict.fromkeys(layers):
                in_layer = torch.tensor([t == layer for t in tensor_layers])
                row[f"full_grad_norm/{layer}"] = math.sqrt(float(sums[in_layer, 0].sum()))
        return row

    def _per_tensor_sums(
        self, evaluator: Evaluator, params: Params, full_grad: Params, grads: Mapping[str, Tensor] | None
    ) -> Tensor:
        """Per tensor, on the host: ‖∇F‖², then ‖g_t − ∇F‖² (with g_t) and ⟨∇F, x_t − x*⟩ (with x*)."""
        rows = []
        for k, g in full_grad.items():
            row = [_dot(g, g)]
            if grads is not None:
                noise = grads[k] - g
                row.append(_dot(noise, noise))
            if self.reference is not None:
                row.append(_dot(g, params[k].double() - self.reference[k].double()))
            rows.append(torch.stack(row))
        return evaluator.over_ranks(torch.stack(rows)).cpu()

    def _against_reference(
        self, evaluator: Evaluator, loss: float, grad_sq: float, inner: float
    ) -> dict[str, float]:
        assert self.reference is not None
        if self.ref_loss is None:  # F(x*) is fixed: x*'s own buffers, F's fixed mask stream
            with evaluator.buffers_of(self.reference_buffers):
                ref_loss, _, _ = evaluator.full_loss_and_grad(
                    self.reference, self.loader, self.seed, with_grad=False
                )
            self.ref_loss = float(ref_loss)
        excess = loss - self.ref_loss
        if math.isfinite(inner) and math.isfinite(excess):
            self.sum_inner += inner
            self.sum_excess += excess
        return {
            "ref_full_loss": self.ref_loss,
            "convexity_ratio": safe_ratio(self.sum_inner, self.sum_excess),
            "pl_ratio": safe_ratio(0.5 * grad_sq, excess),
        }

    def state_dict(self) -> dict[str, Any]:
        return {"ref_loss": self.ref_loss, "sum_inner": self.sum_inner, "sum_excess": self.sum_excess}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.ref_loss = state["ref_loss"]
        self.sum_inner, self.sum_excess = float(state["sum_inner"]), float(state["sum_excess"])


def _dot(a: Tensor, b: Tensor) -> Tensor:
    """⟨a, b⟩ in float64."""
    return torch.sum(a.double() * b.double())
