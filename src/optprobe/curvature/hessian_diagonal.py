"""Exact Hessian entries H_ii and rows H_i· for seeded coordinates per layer (Jiang, Malik & Li)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from optprobe.curvature.hvp import HessianOperator, Partition


@dataclass(frozen=True)
class DiagonalGeometry:
    """Per-block statistics over the sampled coordinates i of one block b.

    ``r_med`` = max_i |H_ii| / (median_i |H_ii| + ε); [``r_med_low``, ``r_med_high``] is its 95% bootstrap
    percentile interval over the sampled coordinates (resampling the sampled |H_ii| with replacement: the
    sampling error of r_med given this sample; it cannot see a layer maximum the sample missed).
    ``dominance_*`` summarise Σ_{j≠i} |H_ij| / |H_ii| with the FULL row j over all parameters; ``within_*``
    restrict j to the block.
    The ratios leave out the ``n_zero_diagonal`` sampled rows with |H_ii| ≤ ε (a dead unit, an input
    feature that is always 0), where the ratio is undefined; they are NaN when every sampled row is such.
    """

    r_med: float
    r_med_low: float
    r_med_high: float
    dominance_mean: float
    dominance_median: float
    within_mean: float
    within_median: float
    n_sampled: int
    n_zero_diagonal: int


def sample_coordinates(
    op: HessianOperator, per_block: int = 200, seed: int = 0, partition: Partition = "layer"
) -> dict[str, Tensor]:
    """Flat indices of up to ``per_block`` coordinates per block, without replacement (all if fewer)."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    sample = {}
    for block, idx in op.layout.blocks(partition).items():
        chosen = (
            idx if idx.numel() <= per_block else idx[torch.randperm(idx.numel(), generator=gen)[:per_block]]
        )
        sample[block] = chosen.sort().values
    return sample


def hessian_rows(op: HessianOperator, indices: Tensor) -> Tensor:
    """H_{i·} = H e_i for each i in ``indices``, shape (len(indices), d): one batched HVP call whose
    tangents live only on the parameters holding ``indices``."""
    basis = torch.zeros(indices.numel(), op.dim, dtype=op.dtype, device=op.device)
    basis[torch.arange(indices.numel()), indices.to(op.device)] = 1.0
    return op(basis, within=op.layout.holding(indices))


def diagonal_geometry(
    op: HessianOperator,
    per_block: int = 200,
    seed: int = 0,
    eps: float = 1e-12,
    partition: Partition = "layer",
    rows_at_once: int = 32,
    n_boot: int = 200,
) -> dict[str, DiagonalGeometry]:
    """r_med (with its bootstrap interval from ``n_boot`` resamples) and diagonal dominance per block, from
    exact sampled rows of H computed ``rows_at_once`` at a time (one batched HVP call each)."""
    blocks = op.layout.blocks(partition)
    result = {}
    for block, idx in sample_coordinates(op, per_block, seed, partition).items():
        diag, full, within = [], [], []
        for chunk in idx.split(rows_at_once):
            rows = hessian_rows(op, chunk).abs().double()
            d = rows[torch.arange(chunk.numel()), chunk]
            diag.append(d)
            full.append(rows.sum(dim=1) - d)
            within.append(rows[:, blocks[block]].sum(dim=1) - d)
        h = torch.cat(diag)
        defined = h > eps
        full_ratio = torch.cat(full)[defined] / h[defined]
        within_ratio = torch.cat(within)[defined] / h[defined]
        low, high = bootstrap_r_med(h, eps, n_boot, seed)
        result[block] = DiagonalGeometry(
            r_med=float(h.max() / (_median(h) + eps)),
            r_med_low=low,
            r_med_high=high,
            dominance_mean=_mean(full_ratio),
            dominance_median=_median(full_ratio),
            within_mean=_mean(within_ratio),
            within_median=_median(within_ratio),
            n_sampled=idx.numel(),
            n_zero_diagonal=int((~defined).sum()),
        )
    return result


def bootstrap_r_med(
    h: Tensor, eps: float = 1e-12, n_boot: int = 200, seed: int = 0, confidence: float = 0.95
) -> tuple[float, float]:
    """Percentile interval of r_med* = max h* / (median h* + ε) over ``n_boot`` resamples h* of ``h``."""
    if h.numel() == 0 or n_boot < 1:
        return float("nan"), float("nan")
    gen = torch.Generator(device="cpu").manual_seed(seed)
    draws = h.cpu().double()[torch.randint(h.numel(), (n_boot, h.numel()), generator=gen)]
    r = draws.max(dim=1).values / (draws.quantile(0.5, dim=1) + eps)
    tail = (1.0 - confidence) / 2
    return float(r.quantile(tail)), float(r.quantile(1.0 - tail))


def _mean(x: Tensor) -> float:
    return float(x.mean()) if x.numel() else float("nan")


def _median(x: Tensor) -> float:
    return float(x.quantile(0.5)) if x.numel() else float("nan")
