"""‖H‖₁,₁ = Σ_ij |H_ij| from Cauchy probes (Xie et al.: the ℓ∞ smoothness that governs Adam).

If v has i.i.d. standard Cauchy entries then (Hv)_i ~ Cauchy(0, Σ_j |H_ij|), and the median of |Cauchy(0, s)|
is s, so the sample median over K probes of |(Hv_k)_i| estimates the ℓ1 norm of row i. Its asymptotic standard
deviation is π s / (2√K).

Memory. An exact median needs all K values |(Hv_k)_i| of a row at once, so estimating n rows holds K · n
entries of the operator's dtype (K = 50, d = 10⁷ float32 rows: 2 GB), plus 2 · probes_at_once · d for the
probes in flight. When K · n entries would exceed ``max_memory`` bytes, the rows are split into passes of
at most ``max_memory`` bytes each; every pass re-draws the same seeded probes and re-computes their
products, so the result is identical and only the time (HVP count) grows with the number of passes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from optprobe.curvature.hvp import HessianOperator, Partition
from optprobe.curvature.probes import cauchy, probe_products
from optprobe.errors import OptprobeError

MAX_MEMORY = 1 << 30
"""Default bound, in bytes, on the K × n block of |H v| values held for the row medians (1 GiB)."""


@dataclass(frozen=True)
class L11Estimate:
    """Estimated ‖H‖₁,₁, its value per dimension, and the row ℓ1 norms it sums."""

    l11: float
    per_dim: float
    row_l1: Tensor
    n_probes: int


def row_l1_norms(
    op: HessianOperator,
    n_probes: int = 50,
    seed: int = 0,
    support: Tensor | None = None,
    rows: Tensor | None = None,
    probes_at_once: int = 32,
    max_memory: int = MAX_MEMORY,
) -> Tensor:
    """median_k |(H v_k)_i| ≈ Σ_{j∈S} |H_ij| for each i in ``rows`` (all if None), float64, with Cauchy
    probes supported on S = ``support`` (all coordinates if None).

    Holds at most ``max_memory`` bytes of |H v| values, in ⌈K · n · itemsize / max_memory⌉ passes over
    the probes (see the module docstring)."""
    if n_probes < 1:
        raise OptprobeError(f"n_probes must be at least 1, got {n_probes}")
    kept = torch.arange(op.dim) if rows is None else rows.reshape(-1).cpu()
    per_row = n_probes * op.dtype.itemsize
    if per_row > max_memory:
        raise OptprobeError(
            f"max_memory = {max_memory} bytes cannot hold the {n_probes} probe values of even one row "
            f"({per_row} bytes); raise max_memory or lower n_probes"
        )
    medians = []
    for block in kept.split(max_memory // per_row):
        block = block.to(op.device)
        values = torch.empty(block.numel(), n_probes, dtype=op.dtype, device=op.device)
        for start, _, hv in probe_products(op, cauchy, n_probes, seed, probes_at_once, support):
            values[:, start : start + hv.shape[0]] = hv[:, block].abs().T
        # the median of K values: the mean of the ⌈K/2⌉-th and (⌊K/2⌋+1)-th smallest (1-based)
        low = values.kthvalue((n_probes + 1) // 2, dim=1).values.double()
        high = values.kthvalue(n_probes // 2 + 1, dim=1).values.double()
        medians.append((low + high) / 2)
        del values  # free this pass before the next one allocates its own
    return torch.cat(medians)


def hessian_l11(
    op: HessianOperator,
    n_probes: int = 50,
    seed: int = 0,
    probes_at_once: int = 32,
    max_memory: int = MAX_MEMORY,
) -> L11Estimate:
    """‖H‖₁,₁ ≈ Σ_i median_k |(H v_k)_i| with K Cauchy probes; holds min(K · d entries, max_memory bytes)."""
    rows = row_l1_norms(op, n_probes, seed, probes_at_once=probes_at_once, max_memory=max_memory)
    total = float(rows.sum())
    return L11Estimate(total, total / op.dim, rows, n_probes)


def blockwise_smoothness(
    op: HessianOperator,
    partition: Partition = "layer",
    n_probes: int = 50,
    seed: int = 0,
    probes_at_once: int = 32,
    max_memory: int = MAX_MEMORY,
) -> dict[str, float]:
    """For each block b: Σ_{i∈b} Σ_{j∈b} |H_ij| / |b|, with Cauchy probes supported on b (K · |b| entries)."""
    result = {}
    for offset, (block, idx) in enumerate(op.layout.blocks(partition).items()):
        rows = row_l1_norms(op, n_probes, seed + offset, idx, idx, probes_at_once, max_memory)
        result[block] = float(rows.sum()) / idx.numel()
    return result
