"""Scheduled curvature metrics: each builds a Hessian operator at x_t on the evaluation batch."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from optprobe.curvature import (
    CurvatureOperator,
    FullHessianOperator,
    HessianOperator,
    blockwise_smoothness,
    diagonal_geometry,
    gauss_newton_split,
    hessian_l11,
    hessian_trace,
    hutchpp_trace,
    sharpness,
    singular_uniformity,
    spectral_density,
)
from optprobe.curvature.cauchy import MAX_MEMORY
from optprobe.curvature.hvp import Partition
from optprobe.curvature.sharded import ShardedHessianOperator
from optprobe.errors import OptprobeError
from optprobe.evaluation import Batch, Evaluator, Params, batch_size
from optprobe.metrics.base import PeriodicMetric
from optprobe.metrics.registry import periodic_metric, periodic_metrics


class _HessianMetric(PeriodicMetric):
    """``on="batch"``: the Hessian of ℓ on the periodic batch; ``on="eval"``: of F over the Probe's
    ``eval_loader`` (:class:`~optprobe.curvature.FullHessianOperator`, F's seed and masks), which adds
    ``<metric>_batch_hvps``: its cost in Hessian-vector products on the periodic batch."""

    family = "curvature"
    sharded = False  # supported under fully_shard (FSDP2): see ShardedHessianOperator

    def __init__(self, every: int, seed: int, chunk_size: int | None, on: str = "batch") -> None:
        if on not in ("batch", "eval"):
            raise OptprobeError(f"on must be 'batch' or 'eval', got {on!r}")
        self.every = every
        self.seed = seed
        self.chunk_size = chunk_size
        self.on = on
        self._loader: Iterable[Batch] | None = None
        self._f_seed = 0

    def attach(self, eval_loader: Iterable[Batch] | None, seed: int) -> None:
        if self.on == "eval" and eval_loader is None:
            raise OptprobeError(
                f"{type(self).__name__}(on='eval') measures the Hessian of F over the evaluation loader: "
                "pass eval_loader to the Probe"
            )
        self._loader, self._f_seed = eval_loader, seed

    def measures_f(self) -> bool:
        return self.on == "eval"

    def _operator(self, evaluator: Evaluator, params: Params, batch: Batch) -> CurvatureOperator:
        if self.on == "eval":
            if self._loader is None:
                raise OptprobeError("on='eval' needs the Probe's eval_loader (attach was not called)")
            if evaluator.sharded:
                return ShardedHessianOperator(evaluator, params, loader=self._loader, seed=self._f_seed)
            return FullHessianOperator(evaluator, params, self._loader, self._f_seed, self.chunk_size)
        if evaluator.sharded:
            return ShardedHessianOperator(evaluator, params, batch)
        return HessianOperator(evaluator, params, batch, chunk_size=self.chunk_size)

    @staticmethod
    def _cost(op: CurvatureOperator, batch: Batch, prefix: str) -> dict[str, float]:
        """``<prefix>_batch_hvps`` for an operator of F: its products in HVPs on the periodic batch."""
        if not isinstance(op, FullHessianOperator):
            return {}
        return {f"{prefix}_batch_hvps": op.batch_hvps(batch_size(batch))}


@periodic_metric("sharpness")
class Sharpness(_HessianMetric):
    """``sharpness`` = λ_max(H) (``sharpness_<i>`` for i ≤ k), ``sharpness_hvps``, ``sharpness_converged``
    (1 when Lanczos met its residual bound, 0 when it stopped at ``max_iter``: the values are then only
    lower bounds, θ_i ≤ λ_i); with ``bottom``, ``sharpness_min`` = λ_min and ``spectral_norm`` =
    max(|λ_max|, |λ_min|). Under fully_shard: products by differences of gradients (of ℓ, or of F)."""

    columns = ("sharpness", "spectral_norm")
    sharded = True

    def __init__(
        self,
        every: int = 100,
        k: int = 1,
        tol: float = 1e-3,
        max_iter: int = 100,
        bottom: bool = False,
        seed: int = 0,
        chunk_size: int | None = 32,
        on: str = "batch",
    ) -> None:
        super().__init__(every, seed, chunk_size, on)
        self.k, self.tol, self.max_iter, self.bottom = k, tol, max_iter, bottom

    def compute(self, evaluator: Evaluator, params: Params, batch: Batch, step: int) -> dict[str, float]:
        op = self._operator(evaluator, params, batch)
        spec = sharpness(op, self.k, self.bottom, self.tol, self.max_iter, self.seed)
        out = {
            "sharpness": spec.top[0],
            "sharpness_hvps": float(spec.n_hvps),
            "sharpness_converged": float(spec.converged),
        }
        out.update(self._cost(op, batch, "sharpness"))
        out.update({f"sharpness_{i + 1}": value for i, value in enumerate(spec.top) if i > 0})
        if spec.bottom is not None:
            out.update(sharpness_min=spec.bottom, spectral_norm=spec.spectral_norm)
        return out


@periodic_metric("hessian_trace")
class HessianTrace(_HessianMetric):
    """``hessian_trace`` ≈ tr H and ``hessian_trace_se``, its standard error, from ``n_probes`` products by
    ``estimator`` = ``"hutchinson"`` or ``"hutchpp"`` (Hutch++: better on low-rank-plus-noise spectra).
    Under fully_shard: products by differences of gradients (of ℓ, or of F)."""

    columns = ("hessian_trace",)
    sharded = True

    def __init__(
        self,
        every: int = 100,
        n_probes: int = 100,
        seed: int = 0,
        chunk_size: int | None = 32,
        on: str = "batch",
        estimator: str = "hutchinson",
    ) -> None:
        if estimator not in ("hutchinson", "hutchpp"):
            raise OptprobeError(f"estimator must be 'hutchinson' or 'hutchpp', got {estimator!r}")
        super().__init__(every, seed, chunk_size, on)
        self.n_probes, self.estimator = n_probes, estimator

    def compute(self, evaluator: Evaluator, params: Params, batch: Batch, step: int) -> dict[str, float]:
        op = self._operator(evaluator, params, batch)
        trace = hutchpp_trace if self.estimator == "hutchpp" else hessian_trace
        est = trace(op, self.n_probes, self.seed)
        out = {"hessian_trace": est.mean, "hessian_trace_se": est.se}
        return out | self._cost(op, batch, "hessian_trace")


@periodic_metric("diagonal_geometry")
class DiagonalGeometry(_HessianMetric):
    """``r_med/<layer>`` with its bootstrap interval ``r_med_low/<layer>``, ``r_med_high/<layer>``,
    ``diag_dominance_mean/<layer>``, ``diag_dominance_median/<layer>`` (full rows) and ``r_med_loss``, the
    loss ℓ(x_t, z) on the curvature batch z; with ``on="eval"`` the rows are those of ∇²F and
    ``r_med_loss`` is F(x_t) (see :class:`_HessianMetric`).

    ``at_loss``: loss levels; the geometry is then measured, checked every ``every`` steps, the first time
    ℓ(x_t, z) ≤ level (once per level; ``r_med_level`` names the lowest level crossed), so that runs of
    different optimizers are compared at equal training loss, not at equal step.
    """

    columns = ("r_med", "diag_dominance")

    def __init__(
        self,
        every: int = 100,
        per_layer: int = 200,
        seed: int = 0,
        chunk_size: int | None = 32,
        at_loss: Sequence[float] | None = None,
        n_boot: int = 200,
        on: str = "batch",
    ) -> None:
        super().__init__(every, seed, chunk_size, on)
        self.per_layer, self.n_boot = per_layer, n_boot
        self.levels = None if at_loss is None else sorted((float(v) for v in at_loss), reverse=True)
        self.passed = 0  # how many of ``levels`` (highest first) the loss has crossed

    def due(self, step: int) -> bool:
        return super().due(step) and (self.levels is None or self.passed < len(self.levels))

    def compute(self, evaluator: Evaluator, params: Params, batch: Batch, step: int) -> dict[str, float]:
        out = {"r_med_loss": self._loss(evaluator, params, batch)}
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
        return out | self._cost(op, batch, "r_med")

    def _loss(self, evaluator: Evaluator, params: Params, batch: Batch) -> float:
        """ℓ(x_t, z) on the curvature batch, or F(x_t) for ``on="eval"``."""
        if self.on != "eval" or self._loader is None:
            return float(evaluator.loss(params, batch))
        value, _, _ = evaluator.full_loss_and_grad(params, self._loader, self._f_seed, with_grad=False)
        return float(value)

    def state_dict(self) -> dict[str, Any]:
        return {"passed": self.passed}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.passed = int(state.get("passed", 0))


@periodic_metric("hessian_l11")
class HessianL11(_HessianMetric):
    """``hessian_l11`` ≈ ‖H‖₁,₁, ``hessian_l11_per_dim``, ``hessian_l11_se`` (its batch-means standard
    error, NaN for n_probes < 20); and ``blockwise_smoothness/<block>``; ``on="eval"`` for ∇²F.

    The exact row medians hold at most ``max_memory`` bytes of |H v| values (K · d entries when that fits;
    otherwise more passes over the same probes, see :mod:`optprobe.curvature.cauchy`)."""

    columns = ("hessian_l11", "blockwise_smoothness")

    def __init__(
        self,
        every: int = 100,
        n_probes: int = 50,
        partition: Partition | None = None,
        seed: int = 0,
        chunk_size: int | None = 32,
        max_memory: int = MAX_MEMORY,
        on: str = "batch",
    ) -> None:
        super().__init__(every, seed, chunk_size, on)
        self.n_probes, self.partition, self.max_memory = n_probes, partition, max_memory

    def compute(self, evaluator: Evaluator, params: Params, batch: Batch, step: int) -> dict[str, float]:
        op = self._operator(evaluator, params, batch)
        est = hessian_l11(op, self.n_probes, self.seed, max_memory=self.max_memory)
        out = {"hessian_l11": est.l11, "hessian_l11_per_dim": est.per_dim, "hessian_l11_se": est.se}
        if self.partition is not None:
            blocks = blockwise_smoothness(
                op, self.partition, self.n_probes, self.seed, max_memory=self.max_memory
            )
            out.update({f"blockwise_smoothness/{b}": value for b, value in blocks.items()})
        return out | self._cost(op, batch, "hessian_l11")


@periodic_metric("gauss_newton")
class GaussNewton(PeriodicMetric):
    """``gn_lambda_max_h``, ``gn_lambda_max_ggn``, ``gn_lambda_min_h``, ``gn_trace_h``, ``gn_trace_ggn``,
    ``gn_trace_residual`` (tr R = tr H − tr G) and ``gn_hvps`` on the periodic batch: H = G + R, with the
    Probe's ``loss_fn`` a :class:`~optprobe.curvature.SplitLoss` (the loss through the model's outputs)."""

    family, columns = "curvature", ("gn",)

    def __init__(
        self,
        every: int = 100,
        tol: float = 1e-3,
        max_iter: int = 100,
        n_probes: int = 100,
        seed: int = 0,
        chunk_size: int | None = 32,
    ) -> None:
        self.every, self.tol, self.max_iter, self.n_probes = every, tol, max_iter, n_probes
        self.seed, self.chunk_size = seed, chunk_size

    def compute(self, evaluator: Evaluator, params: Params, batch: Batch, step: int) -> dict[str, float]:
        r = gauss_newton_split(
            evaluator, params, batch, None, self.tol, self.max_iter, self.n_probes, self.seed, self.chunk_size
        )
        return {
            "gn_lambda_max_h": r.lambda_max_h,
            "gn_lambda_max_ggn": r.lambda_max_ggn,
            "gn_lambda_min_h": r.lambda_min_h,
            "gn_trace_h": r.trace_h,
            "gn_trace_ggn": r.trace_ggn,
            "gn_trace_residual": r.trace_residual,
            "gn_hvps": float(r.n_hvps),
        }


@periodic_metric("spectral_density")
class SpectralDensityMetric(_HessianMetric):
    """``negative_mass`` (≈ fraction of eigenvalues of H below 0, by stochastic Lanczos quadrature),
    ``negative_mass_se``, ``density_hvps`` and the density itself: ``density_bin<j>``, j < ``bins``, at
    ``bins`` points from ``density_lo`` to ``density_hi`` (:meth:`SpectralDensity.binned`; ``bins = 0``
    writes none); ``on="eval"`` for the Hessian of F."""

    columns = ("negative_mass", "density")

    def __init__(
        self,
        every: int = 100,
        n_starts: int = 8,
        steps: int = 40,
        seed: int = 0,
        chunk_size: int | None = 32,
        on: str = "batch",
        bins: int = 50,
    ) -> None:
        if bins != 0 and bins < 20:
            raise OptprobeError(f"bins must be 0 (no density columns) or at least 20, got {bins}")
        super().__init__(every, seed, chunk_size, on)
        self.n_starts, self.steps, self.bins = n_starts, steps, bins

    def compute(self, evaluator: Evaluator, params: Params, batch: Batch, step: int) -> dict[str, float]:
        op = self._operator(evaluator, params, batch)
        d = spectral_density(op, self.n_starts, self.steps, seed=self.seed)
        out = {"negative_mass": d.negative_mass, "negative_mass_se": d.negative_mass_se}
        if self.bins:
            lo, hi, values = d.binned(self.bins)
            out |= {"density_lo": lo, "density_hi": hi}
            out |= {f"density_bin{j}": float(v) for j, v in enumerate(values)}
        return out | {"density_hvps": float(d.n_hvps)} | self._cost(op, batch, "density")


@periodic_metric("singular_uniformity")
class SingularUniformity(PeriodicMetric):
    """``effective_rank/<layer>`` and ``singular_r_med/<layer>`` of each weight matrix (no Hessian needed)."""

    family, columns = "curvature", ("effective_rank", "singular_r_med")

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
