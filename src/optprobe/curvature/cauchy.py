"""‖H‖₁,₁ = Σ_ij |H_ij| from Cauchy probes (Xie et al.: the ℓ∞ smoothness that governs Adam).

If v has i.i.d. standard Cauchy entries then (Hv)_i ~ Cauchy(0, Σ_j |H_ij|), and the median of |Cauchy(0, s)|
is s. The sample median over K probes is not mean-unbiased for finite K: its mean is b(K)·s with
b(K) = E[median of K draws of |Cauchy(0, 1)|] (:func:`median_bias`: 1.0257 at K = 50, ≈ 1 + π²/(8K)),
so the row estimate is median_k |(Hv_k)_i| / b(K), unbiased for K ≥ 3 (b is infinite for K ≤ 2). Its
asymptotic standard deviation is π s / (2√K).

Sampling error of ‖H‖₁,₁: rows share the probes, so their errors are correlated and the rows' spread alone
does not give it. ``hessian_l11`` splits the K probes into G = ⌊K/10⌋ groups, computes the same estimate
T_g from each group, and reports se = sd(T_g)/√G (batch means, G − 1 degrees of freedom; NaN for K < 20).

Memory. An exact median needs all K values |(Hv_k)_i| of a row at once, so estimating n rows takes
K · n · (2 · itemsize + 1) bytes: the values in the operator's dtype, then one masked copy and a boolean
mask while the medians are taken (K = 50, n = d = 10⁷, float32: 4.5 GB); plus 2 · probes_at_once · d
entries for the probes in flight. When that would exceed ``max_memory`` bytes, the rows are split into
passes that each fit; every pass re-draws the same seeded probes and re-computes their products, so the
result is identical and only the time (HVP count) grows with the number of passes.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy import integrate, special
from torch import Tensor

from optprobe.curvature.hvp import Partition
from optprobe.curvature.operator import CurvatureOperator
from optprobe.curvature.probes import cauchy, probe_products
from optprobe.errors import OptprobeError

MAX_MEMORY = 1 << 30
"""Default bound, in bytes, on the memory the exact row medians take (1 GiB)."""


@dataclass(frozen=True)
class L11Estimate:
    """Estimated ‖H‖₁,₁, its value per dimension, the row ℓ1 norms it sums, and its standard error."""

    l11: float
    per_dim: float
    row_l1: Tensor
    n_probes: int
    se: float


def row_l1_norms(
    op: CurvatureOperator,
    n_probes: int = 50,
    seed: int = 0,
    support: Tensor | None = None,
    rows: Tensor | None = None,
    probes_at_once: int = 32,
    max_memory: int = MAX_MEMORY,
) -> Tensor:
    """median_k |(H v_k)_i| / b(K) ≈ Σ_{j∈S} |H_ij| for each i in ``rows`` (all if None), float64, with K
    Cauchy probes supported on S = ``support`` (all coordinates if None); b(K) = :func:`median_bias`.

    Takes at most ``max_memory`` bytes for the medians, in ⌈K · n · (2 · itemsize + 1) / max_memory⌉
    passes over the probes (see the module docstring)."""
    return _row_estimates(op, n_probes, seed, support, rows, probes_at_once, max_memory)[0]


def _row_estimates(
    op: CurvatureOperator,
    n_probes: int,
    seed: int,
    support: Tensor | None,
    rows: Tensor | None,
    probes_at_once: int,
    max_memory: int,
) -> tuple[Tensor, Tensor]:
    """The row estimates of :func:`row_l1_norms` and, for each group of probes, the sum over the rows of
    the same estimate from that group alone (float64, one entry per group, see the module docstring)."""
    if n_probes < 3:
        raise OptprobeError(
            f"n_probes must be at least 3, got {n_probes}: the median of fewer |Cauchy| draws has no "
            "finite mean"
        )
    kept = torch.arange(op.dim) if rows is None else rows.reshape(-1).cpu()
    per_row = n_probes * (2 * op.dtype.itemsize + 1)
    if per_row > max_memory:
        raise OptprobeError(
            f"max_memory = {max_memory} bytes cannot hold the {n_probes} probe values of even one row "
            f"({per_row} bytes); raise max_memory or lower n_probes"
        )
    n_groups = max(n_probes // 10, 1)  # for the standard error: groups of 10 to 19 consecutive probes
    groups = [(g * n_probes // n_groups, (g + 1) * n_probes // n_groups) for g in range(n_groups)]
    medians, totals = [], torch.zeros(len(groups), dtype=torch.float64)
    for block in kept.split(max_memory // per_row):
        block = block.to(op.device)
        values = torch.empty(block.numel(), n_probes, dtype=op.dtype, device=op.device)
        for start, _, hv in probe_products(op, cauchy, n_probes, seed, probes_at_once, support):
            values[:, start : start + hv.shape[0]] = hv[:, block].abs().T
        medians.append(_row_medians(values) / median_bias(n_probes))
        for g, (first, end) in enumerate(groups):
            totals[g] += float(_row_medians(values[:, first:end]).sum()) / median_bias(end - first)
        del values  # free this pass before the next one allocates its own
    return torch.cat(medians), totals


@functools.cache
def median_bias(k: int) -> float:
    """b(k) = E[median of k i.i.d. |Cauchy(0, 1)|], finite for k ≥ 3: with F(x) = (2/π) arctan x the j-th
    smallest draw is tan(π U_(j)/2), U_(j) ~ Beta(j, k + 1 − j); for even k, the mean of the middle two."""
    if k < 3:
        raise OptprobeError(f"the median of {k} |Cauchy| draws has no finite mean (k must be at least 3)")

    def order_mean(j: int) -> float:  # E tan(π U/2), U ~ Beta(j, k + 1 − j)
        a, b = j, k + 1 - j
        log_norm = special.betaln(a, b)

        def integrand(u: float) -> float:
            return math.tan(math.pi * u / 2) * np.exp((a - 1) * np.log(u) + (b - 1) * np.log1p(-u) - log_norm)

        return integrate.quad(integrand, 0, 1, limit=200, epsrel=1e-12)[0]

    return order_mean(k // 2 + 1) if k % 2 else (order_mean(k // 2) + order_mean(k // 2 + 1)) / 2


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
    op: CurvatureOperator,
    n_probes: int = 50,
    seed: int = 0,
    probes_at_once: int = 32,
    max_memory: int = MAX_MEMORY,
) -> L11Estimate:
    """‖H‖₁,₁ ≈ Σ_i median_k |(H v_k)_i| / b(K) with K Cauchy probes, and its batch-means standard error,
    in ≤ ``max_memory`` bytes (module docstring)."""
    rows, totals = _row_estimates(op, n_probes, seed, None, None, probes_at_once, max_memory)
    total = float(rows.sum())
    se = float(totals.std() / math.sqrt(totals.numel())) if totals.numel() > 1 else math.nan
    return L11Estimate(total, total / op.dim, rows, n_probes, se)


def blockwise_smoothness(
    op: CurvatureOperator,
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
