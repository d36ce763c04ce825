"""The Gauss–Newton split H = G + R at one point and batch: how much of the curvature the (PSD for convex
output losses) Gauss–Newton matrix G = Jᵀ ∇²_f ℓ J explains, and what the residual R = Σ_j ∂ℓ/∂f_j ∇²f_j
adds; negative eigenvalues of H, and negative convexity gaps, can only come from R."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from torch import Tensor

from optprobe.curvature.ggn import GGNOperator, SplitLoss, split_of
from optprobe.curvature.hutchinson import hessian_trace
from optprobe.curvature.hvp import HessianOperator
from optprobe.curvature.lanczos import sharpness
from optprobe.evaluation import Batch, Evaluator


@dataclass(frozen=True)
class GaussNewtonSplit:
    """λ_max(H), λ_max(G), λ_min(H), tr H and tr G (Hutchinson, with standard errors), products used."""

    lambda_max_h: float
    lambda_max_ggn: float
    lambda_min_h: float
    trace_h: float
    trace_h_se: float
    trace_ggn: float
    trace_ggn_se: float
    n_hvps: int

    @property
    def trace_residual(self) -> float:
        """tr R = tr H − tr G (both from the same probes, so their noise partly cancels)."""
        return self.trace_h - self.trace_ggn


def gauss_newton_split(
    evaluator: Evaluator,
    params: Mapping[str, Tensor],
    batch: Batch,
    split: SplitLoss | None = None,
    tol: float = 1e-4,
    max_iter: int = 100,
    n_probes: int = 100,
    seed: int = 0,
    chunk_size: int | None = 32,
) -> GaussNewtonSplit:
    """λ_max, λ_min by Lanczos and tr by Hutchinson (same probes for H and G) of H = ∇²ℓ and G = Jᵀ∇²_fℓJ."""
    split = split_of(evaluator, split)
    h = HessianOperator(evaluator, params, batch, chunk_size=chunk_size)
    g = GGNOperator(evaluator, params, batch, split, chunk_size=chunk_size)
    spec_h = sharpness(h, bottom=True, tol=tol, max_iter=max_iter, seed=seed)
    spec_g = sharpness(g, tol=tol, max_iter=max_iter, seed=seed)
    tr_h = hessian_trace(h, n_probes, seed)
    tr_g = hessian_trace(g, n_probes, seed)
    assert spec_h.bottom is not None
    top_h, top_g, n_hvps = spec_h.top[0], spec_g.top[0], h.n_hvps + g.n_hvps
    return GaussNewtonSplit(top_h, top_g, spec_h.bottom, tr_h.mean, tr_h.se, tr_g.mean, tr_g.se, n_hvps)
