"""‖H‖₁,₁ = Σ_ij |H_ij| from Cauchy probes (Xie et al.: the ℓ∞ smoothness that governs Adam).

If v has i.i.d. standard Cauchy entries then (Hv)_i ~ Cauchy(0, Σ_j |H_ij|), and the median of |Cauchy(0, s)|
is s, so the sample median over K probes of |(Hv_k)_i| estimates the ℓ1 norm of row i. Its asymptotic standard
deviation is π s / (2√K).

Memory. An exact median needs all K values |(Hv_k)_i| of a row at once, so estimating n rows takes
K · n · (2 · itemsize + 1) bytes: the values in the operator's dtype, then one masked copy and a boolean
mask while the medians are taken (K = 50, n = d = 10⁷, float32: 4.5 GB); plus 2 · probes_at_once · d
entries for the probes in flight. When that would exceed ``max_memory`` bytes, the rows are split into
passes that each fit; every pass re-draws the same seeded probes and re-computes their products, so the
result is identical and only the time (HVP count) grows with the number of passes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from optprobe.curvature.hvp import HessianOperator, Partition
from optprobe.curvature.probes import cauchy, probe_products
from optprobe.errors import OptprobeError

MAX_MEMORY = 1 << 30
"""Default bound, in bytes, on the memory the exact row medians take (1 GiB)."""


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

    Takes at most ``max_memory`` bytes for the medians, in ⌈K · n · (2 · itemsize + 1) / max_memory⌉
    passes over the probes (see the module docstring)."""
    if n_probes < 1:
        raise OptprobeError(f"n_probes must be at least 1, got {n_probes}")
    kept = torch.arange(op.dim) if rows is None else rows.reshape(-1).cpu()
    per_row = n_probes * (2 * op.dtype.itemsize + 1)
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
        medians.append(_row_medians(values))
        del values  # free this pass before the next one allocates its own
    return torch.cat(medians)


def _row_medians(values: Tensor) -> Tensor:
    """Median of each row of an (n, K) tensor, in float64: the mean of its ⌈K/2⌉-th and (⌊K/2⌋+1)-th
    smallest entries (1-based; the same entry when K is odd)."""
    k = values.shape[1]
    low = values.median(dim=1).values  # torch gives the lower median, the ⌈K/2⌉-th smallest
    if k % 2:
        return low.double()
    below = values <= low[:, None]
    # the (K/2+1)-th smallest is low again when more than K/2 entries tie at or below it, else the least
    # entry above it
    above = values.masked_fill(below, float("inf")).amin(dim=1)
    high = torch.where(below.sum(dim=1) > k // 2, low, above)
    return (low.double() + high.double()) / 2


def hessian_l11(
    op: HessianOperator,
    n_probes: int = 50,
    seed: int = 0,
    probes_at_once: int = 32,
    max_memory: int = MAX_MEMORY,
) -> L11Estimate:
    """‖H‖₁,₁ ≈ Σ_i median_k |(H v_k)_i| with K Cauchy probes, in ≤ ``max_memory`` bytes (module doc)."""
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
