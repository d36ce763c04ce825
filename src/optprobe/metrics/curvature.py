"""Scheduled curvature metrics: each builds a Hessian operator at x_t on the evaluation batch."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from optprobe.curvature import (
    HessianOperator,
    blockwise_smoothness,
    diagonal_geometry,
    hessian_l11,
    hessian_trace,
    sharpness,
    singular_uniformity,
)
from optprobe.curvature.cauchy import MAX_MEMORY
from optprobe.curvature.hvp import Partition
from optprobe.evaluation import Batch, Evaluator, Params
from optprobe.metrics.base import PeriodicMetric
from optprobe.metrics.registry import periodic_metric, periodic_metrics


class _HessianMetric(PeriodicMetric):
    def __init__(self, every: int, seed: int, chunk_size: int | None) -> None:
        self.every = every
        self.seed = seed
        self.chunk_size = chunk_size

    def _operator(self, evaluator: Evaluator, params: Params, batch: Batch) -> HessianOperator:
        return HessianOperator(evaluator, params, batch, chunk_size=self.chunk_size)


@periodic_metric("sharpness")
class Sharpness(_HessianMetric):
    """``sharpness`` = λ_max(H) (``sharpness_<i>`` for i ≤ k), ``sharpness_hvps``; with ``bottom``,
    ``sharpness_min`` = λ_min and ``spectral_norm`` = max(|λ_max|, |λ_min|)."""

    def __init__(
        self,
        every: int = 100,
        k: int = 1,
        tol: float = 1e-3,
        max_iter: int = 100,
        bottom: bool = False,
        seed: int = 0,
        chunk_size: int | None = 32,
    ) -> None:
        super().__init__(every, seed, chunk_size)
        self.k, self.tol, self.max_iter, self.bottom = k, tol, max_iter, bottom

    def compute(self, evaluator: Evaluator, params: Params, batch: Batch, step: int) -> dict[str, float]:
        spec = sharpness(
            self._operator(evaluator, params, batch), self.k, self.bottom, self.tol, self.max_iter, self.seed
        )
        out = {"sharpness": spec.top[0], "sharpness_hvps": float(spec.n_hvps)}
        out.update({f"sharpness_{i + 1}": value for i, value in enumerate(spec.top) if i > 0})
        if spec.bottom is not None:
            out.update(sharpness_min=spec.bottom, spectral_norm=spec.spectral_norm)
        return out


@periodic_metric("hessian_trace")
class HessianTrace(_HessianMetric):
    """``hessian_trace`` ≈ tr H (Hutchinson) and ``hessian_trace_se``, its standard error."""

    def __init__(
        self, every: int = 100, n_probes: int = 100, seed: int = 0, chunk_size: int | None = 32
    ) -> None:
        super().__init__(every, seed, chunk_size)
        self.n_probes = n_probes

    def compute(self, evaluator: Evaluator, params: Params, batch: Batch, step: int) -> dict[str, float]:
        est = hessian_trace(self._operator(evaluator, params, batch), self.n_probes, self.seed)
        return {"hessian_trace": est.mean, "hessian_trace_se": est.se}


@periodic_metric("diagonal_geometry")
class DiagonalGeometry(_HessianMetric):
    """``r_med/<layer>`` with its bootstrap interval ``r_med_low/<layer>``, ``r_med_high/<layer>``,
    ``diag_dominance_mean/<layer>``, ``diag_dominance_median/<layer>`` (full rows) and ``r_med_loss``, the
    loss ℓ(x_t, z) on the curvature batch z.

    ``at_loss``: loss levels; the geometry is then measured, checked every ``every`` steps, the first time
    ℓ(x_t, z) ≤ level (once per level; ``r_med_level`` names the lowest level crossed), so that runs of
    different optimizers are compared at equal training loss, not at equal step.
    """

    def __init__(
        self,
        every: int = 100,
        per_layer: int = 200,
        seed: int = 0,
        chunk_size: int | None = 32,
        at_loss: Sequence[float] | None = None,
        n_boot: int = 200,
    ) -> None:
        super().__init__(every, seed, chunk_size)
        self.per_layer, self.n_boot = per_layer, n_boot
        self.levels = None if at_loss is None else sorted((float(v) for v in at_loss), reverse=True)
        self.passed = 0  # how many of ``levels`` (highest first) the loss has crossed

    def due(self, step: int) -> bool:
        return super().due(step) and (self.levels is None or self.passed < len(self.levels))

    def compute(self, evaluator: Evaluator, params: Params, batch: Batch, step: int) -> dict[str, float]:
        out = {"r_med_loss": float(evaluator.loss(params, batch))}
        if self.levels is not None:
            crossed = [level for level in self.levels[self.passed :] if out["r_med_loss"] <= level]
            if not crossed:
                return {}
            self.passed += len(crossed)
            out["r_med_level"] = crossed[-1]
        op = self._operator(evaluator, params, batch)
        rows = self.chunk_size or self.per_layer  # one batched call per chunk of a layer's sampled rows
        geo = diagonal_geometry(op, self.per_layer, self.seed, rows_at_once=rows, n_boot=self.n_boot)
        for layer, g in geo.items():
            out[f"r_med/{layer}"] = g.r_med
            out[f"r_med_low/{layer}"] = g.r_med_low
            out[f"r_med_high/{layer}"] = g.r_med_high
            out[f"diag_dominance_mean/{layer}"] = g.dominance_mean
            out[f"diag_dominance_median/{layer}"] = g.dominance_median
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"passed": self.passed}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.passed = int(state.get("passed", 0))


@periodic_metric("hessian_l11")
class HessianL11(_HessianMetric):
    """``hessian_l11`` ≈ ‖H‖₁,₁, ``hessian_l11_per_dim``; and ``blockwise_smoothness/<block>``.

    The exact row medians hold at most ``max_memory`` bytes of |H v| values (K · d entries when that fits;
    otherwise more passes over the same probes, see :mod:`optprobe.curvature.cauchy`)."""

    def __init__(
        self,
        every: int = 100,
        n_probes: int = 50,
        partition: Partition | None = None,
        seed: int = 0,
        chunk_size: int | None = 32,
        max_memory: int = MAX_MEMORY,
    ) -> None:
        super().__init__(every, seed, chunk_size)
        self.n_probes, self.partition, self.max_memory = n_probes, partition, max_memory

    def compute(self, evaluator: Evaluator, params: Params, batch: Batch, step: int) -> dict[str, float]:
        op = self._operator(evaluator, params, batch)
        est = hessian_l11(op, self.n_probes, self.seed, max_memory=self.max_memory)
        out = {"hessian_l11": est.l11, "hessian_l11_per_dim": est.per_dim}
        if self.partition is not None:
            blocks = blockwise_smoothness(
                op, self.partition, self.n_probes, self.seed, max_memory=self.max_memory
            )
            out.update({f"blockwise_smoothness/{b}": value for b, value in blocks.items()})
        return out


@periodic_metric("singular_uniformity")
class SingularUniformity(PeriodicMetric):
    """``effective_rank/<layer>`` and ``singular_r_med/<layer>`` of each weight matrix (no Hessian needed)."""

    def __init__(self, every: int = 100, top: int = 1) -> None:
        self.every, self.top = every, top

    def compute(self, evaluator: Evaluator, params: Params, batch: Batch, step: int) -> dict[str, float]:
        out = {}
        for layer, s in singular_uniformity(params, self.top).items():
            out[f"effective_rank/{layer}"] = s.effective_rank
            out[f"singular_r_med/{layer}"] = s.r_med
        return out


PERIODIC_METRICS: dict[str, type[PeriodicMetric]] = periodic_metrics()
"""Config names of the periodic metrics (``curvature = [{ name = "sharpness", every = 50 }]``): those above
and those registered in other files (see :mod:`optprobe.metrics.registry`)."""
