"""Hutchinson estimators: tr H = E[vᵀHv] and diag H = E[v ⊙ Hv] with Rademacher probes v.

Probes are processed ``probes_at_once`` at a time (see :mod:`optprobe.curvature.probes`): memory is
O(probes_at_once · d) plus K scalars (trace) or one d-vector (diagonal), whatever the number of probes K.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from optprobe.curvature.operator import CurvatureOperator
from optprobe.curvature.probes import probe_products, rademacher


@dataclass(frozen=True)
class TraceEstimate:
    """Sample mean of vᵀHv over probes and its standard error."""

    mean: float
    se: float
    n_probes: int


def _check(n_probes: int) -> None:
    if n_probes < 2:
        raise ValueError(f"n_probes must be at least 2 to give a standard error, got {n_probes}")


def hessian_trace(
    op: CurvatureOperator, n_probes: int = 100, seed: int = 0, probes_at_once: int = 32
) -> TraceEstimate:
    """tr H ≈ (1/K) Σ_k v_kᵀ H v_k, standard error s/√K; Var(vᵀHv) = 2 Σ_{i≠j} H_ij²."""
    _check(n_probes)
    samples = torch.cat(
        [
            (v * hv).sum(dim=1).double()
            for _, v, hv in probe_products(op, rademacher, n_probes, seed, probes_at_once)
        ]
    )
    return TraceEstimate(float(samples.mean()), float(samples.std()) / math.sqrt(n_probes), n_probes)


def hutchinson_diagonal(
    op: CurvatureOperator, n_probes: int = 100, seed: int = 0, probes_at_once: int = 32
) -> Tensor:
    """diag H ≈ (1/K) Σ_k v_k ⊙ H v_k (flat); entry i has variance Σ_{j≠i} H_ij² / K."""
    _check(n_probes)
    total = torch.zeros(op.dim, dtype=op.dtype, device=op.device)
    for _, v, hv in probe_products(op, rademacher, n_probes, seed, probes_at_once):
        total += (v * hv).sum(dim=0)
    return total / n_probes
