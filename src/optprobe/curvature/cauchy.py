"""‖H‖₁,₁ = Σ_ij |H_ij| from Cauchy probes (Xie et al.: the ℓ∞ smoothness that governs Adam).

If v has i.i.d. standard Cauchy entries then (Hv)_i ~ Cauchy(0, Σ_j |H_ij|), and the median of |Cauchy(0, s)|
is s, so the sample median over K probes of |(Hv_k)_i| estimates the ℓ1 norm of row i. Its asymptotic standard
deviation is π s / (2√K).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from optprobe.curvature.hvp import HessianOperator, Partition


@dataclass(frozen=True)
class L11Estimate:
    """Estimated ‖H‖₁,₁, its value per dimension, and the row ℓ1 norms it sums."""

    l11: float
    per_dim: float
    row_l1: Tensor
    n_probes: int


def cauchy_probes(n: int, dim: int, seed: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """n seeded probes with i.i.d. standard Cauchy entries, shape (n, dim)."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    return torch.empty(n, dim, dtype=torch.float64).cauchy_(generator=gen).to(dtype=dtype, device=device)


def row_l1_norms(
    op: HessianOperator, n_probes: int = 50, seed: int = 0, support: Tensor | None = None
) -> Tensor:
    """median_k |(H v_k)_i| ≈ Σ_{j∈S} |H_ij| for all i, probes supported on S (all if None)."""
    v = cauchy_probes(n_probes, op.dim, seed, op.dtype, op.device)
    if support is not None:
        mask = torch.zeros(op.dim, dtype=torch.bool, device=op.device)
        mask[support.to(op.device)] = True
        v = v * mask
    ordered = op(v).abs().double().sort(dim=0).values
    return (ordered[(n_probes - 1) // 2] + ordered[n_probes // 2]) / 2


def hessian_l11(op: HessianOperator, n_probes: int = 50, seed: int = 0) -> L11Estimate:
    """‖H‖₁,₁ ≈ Σ_i median_k |(H v_k)_i| with K Cauchy probes."""
    rows = row_l1_norms(op, n_probes, seed)
    total = float(rows.sum())
    return L11Estimate(total, total / op.dim, rows, n_probes)


def blockwise_smoothness(
    op: HessianOperator, partition: Partition = "layer", n_probes: int = 50, seed: int = 0
) -> dict[str, float]:
    """For each block b: Σ_{i∈b} Σ_{j∈b} |H_ij| / |b|, with Cauchy probes supported on b."""
    result = {}
    for offset, (block, idx) in enumerate(op.layout.blocks(partition).items()):
        rows = row_l1_norms(op, n_probes, seed + offset, support=idx)
        result[block] = float(rows[idx.to(rows.device)].sum()) / idx.numel()
    return result
