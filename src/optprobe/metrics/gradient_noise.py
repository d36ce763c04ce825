"""Per-sample gradient noise within a batch of B examples (g_i the gradient of example i, ḡ their mean).

grad_noise_trace = tr Σ̂ = Σ_i ‖g_i − ḡ‖² / (B − 1); grad_noise_rel = tr Σ̂ / ‖ḡ‖², the "relative noise"
(strong-growth) constant stochastic analyses assume bounded; gsnr/<layer> = mean over the layer's
coordinates j of ḡ_j² / Σ̂_jj, the gradient signal-to-noise ratio (coordinates with Σ̂_jj = 0 left out).

A periodic metric, since it costs about B backward passes: ``torch.func.vmap(grad(...))`` over chunks of
``chunk_size`` examples, each seen by ``loss_fn`` as a batch of one (every tensor of the batch is
batch-first), merged into running per-coordinate means and squared deviations in float64 (Chan et al.),
so memory holds one chunk of per-sample gradients. Dropout draws a mask per example; models with
BatchNorm need ``ProbeConfig(eval_mode=True)`` (one example has no batch statistics). Under data
parallelism each rank measures its own periodic batch (nothing is reduced across ranks).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from optprobe.errors import OptprobeError
from optprobe.evaluation import Batch, Evaluator, Params, batch_size
from optprobe.metrics.base import PeriodicMetric, safe_ratio
from optprobe.metrics.registry import periodic_metric
from optprobe.reductions import layer_of


def _map(batch: Batch, fn: Callable[[Tensor], Any], other: Any = "keep") -> Any:
    """``batch`` with ``fn`` applied to every tensor (non-tensors kept, or replaced by ``other``)."""
    if isinstance(batch, Tensor):
        return fn(batch)
    if isinstance(batch, dict):
        return {k: _map(v, fn, other) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_map(v, fn, other) for v in batch)
    return batch if other == "keep" else other


@periodic_metric("gradient_noise")
class GradientNoise(PeriodicMetric):
    """``grad_noise_trace``, ``grad_noise_rel`` and ``gsnr/<layer>`` on the periodic batch at x_t."""

    family, columns = "gradient_noise", ("grad_noise", "gsnr")

    def __init__(self, every: int = 100, chunk_size: int = 32) -> None:
        if chunk_size < 1:
            raise OptprobeError(f"chunk_size must be ≥ 1, got {chunk_size}")
        self.every, self.chunk_size = every, chunk_size

    def compute(self, evaluator: Evaluator, params: Params, batch: Batch, step: int) -> dict[str, float]:
        n_total = batch_size(batch)
        if n_total < 2:
            raise OptprobeError("gradient noise needs a batch of at least 2 examples")
        mean = {k: torch.zeros(p.shape, dtype=torch.float64, device=p.device) for k, p in params.items()}
        squares = {k: torch.zeros_like(m) for k, m in mean.items()}  # Σ_i (g_i − ḡ)² per coordinate
        seen = 0
        for start in range(0, n_total, self.chunk_size):
            chunk = _map(batch, lambda t, s=start: t[s : s + self.chunk_size])
            grads = self._per_sample(evaluator, params, chunk)
            n = next(iter(grads.values())).shape[0]
            for k, g in grads.items():  # merge the chunk's mean and squared deviations (Chan et al.)
                g = g.double()
                chunk_mean = g.mean(0)
                delta = chunk_mean - mean[k]
                mean[k] += delta * (n / (seen + n))
                squares[k] += ((g - chunk_mean) ** 2).sum(0) + delta**2 * (seen * n / (seen + n))
            seen += n
        variance = {k: s / (seen - 1) for k, s in squares.items()}
        trace = float(sum(v.sum() for v in variance.values()))
        signal = float(sum((m**2).sum() for m in mean.values()))
        out = {"grad_noise_trace": trace, "grad_noise_rel": safe_ratio(trace, signal)}
        ratios: dict[str, list[Tensor]] = {}
        for k in params:
            noisy = variance[k] > 0
            ratios.setdefault(layer_of(k), []).append((mean[k][noisy] ** 2 / variance[k][noisy]).reshape(-1))
        for layer, parts in ratios.items():
            values = torch.cat(parts)
            out[f"gsnr/{layer}"] = float(values.mean()) if values.numel() else math.nan
        return out

    def _per_sample(self, evaluator: Evaluator, params: Params, chunk: Batch) -> dict[str, Tensor]:
        """{name: (n, *shape)}: ∇ℓ(x, z_i) for each example z_i of ``chunk``."""

        def sample_loss(p: Params, sample: Batch) -> Tensor:
            return evaluator.loss_at(p, _map(sample, lambda t: t.unsqueeze(0)))

        in_dims = _map(chunk, lambda t: 0, other=None)
        per_sample = torch.func.vmap(
            torch.func.grad(sample_loss), in_dims=(None, in_dims), randomness="different"
        )
        return per_sample({k: p.detach() for k, p in params.items()}, chunk)
