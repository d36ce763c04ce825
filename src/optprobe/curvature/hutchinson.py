"""Hutchinson estimators: tr H = E[vᵀHv] and diag H = E[v ⊙ Hv] with Rademacher probes v."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from optprobe.curvature.hvp import HessianOperator


@dataclass(frozen=True)
class TraceEstimate:
    """Sample mean of vᵀHv over probes and its standard error."""

    mean: float
    se: float
    n_probes: int


def rademacher(n: int, dim: int, seed: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """n seeded probes with i.i.d. ±1 entries, shape (n, dim)."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    signs = torch.randint(0, 2, (n, dim), generator=gen).to(dtype=dtype, device=device)
    return signs.mul_(2).sub_(1)


def _probe_products(op: HessianOperator, n_probes: int, seed: int) -> tuple[Tensor, Tensor]:
    if n_probes < 2:
        raise ValueError(f"n_probes must be at least 2 to give a standard error, got {n_probes}")
    v = rademacher(n_probes, op.dim, seed, op.dtype, op.device)
    return v, op(v)


def hessian_trace(op: HessianOperator, n_probes: int = 100, seed: int = 0) -> TraceEstimate:
    """tr H ≈ (1/K) Σ_k v_kᵀ H v_k, standard error s/√K; Var(vᵀHv) = 2 Σ_{i≠j} H_ij²."""
    v, hv = _probe_products(op, n_probes, seed)
    samples = (v * hv).sum(dim=1).double()
    return TraceEstimate(float(samples.mean()), float(samples.std()) / math.sqrt(n_probes), n_probes)


def hutchinson_diagonal(op: HessianOperator, n_probes: int = 100, seed: int = 0) -> Tensor:
    """diag H ≈ (1/K) Σ_k v_k ⊙ H v_k (flat); entry i has variance Σ_{j≠i} H_ij² / K."""
    v, hv = _probe_products(op, n_probes, seed)
    return (v * hv).mean(dim=0)
