"""Exact Hessian entries H_ii and rows H_i· for seeded coordinates per layer (Jiang, Malik & Li)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from optprobe.curvature.hvp import HessianOperator, Partition


@dataclass(frozen=True)
class DiagonalGeometry:
    """Per-block statistics over the sampled coordinates i of one block b.

    ``r_med`` = max_i |H_ii| / (median_i |H_ii| + ε). ``dominance_*`` summarise
    Σ_{j≠i} |H_ij| / |H_ii| with the FULL row j over all parameters; ``within_*`` restrict j to the block.
    The ratios leave out the ``n_zero_diagonal`` sampled rows with |H_ii| ≤ ε (a dead unit, an input
    feature that is always 0), where the ratio is undefined; they are NaN when every sampled row is such.
    """

    r_med: float
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
    """H_{i·} = H e_i for each i in ``indices``, shape (len(indices), d), from batched HVPs."""
    basis = torch.zeros(indices.numel(), op.dim, dtype=op.dtype, device=op.device)
    basis[torch.arange(indices.numel()), indices.to(op.device)] = 1.0
    return op(basis)


def diagonal_geometry(
    op: HessianOperator,
    per_block: int = 200,
    seed: int = 0,
    eps: float = 1e-12,
    partition: Partition = "layer",
    rows_at_once: int = 32,
) -> dict[str, DiagonalGeometry]:
    """r_med and diagonal dominance per block from exact sampled rows of H, ``rows_at_once`` at a time."""
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
        result[block] = DiagonalGeometry(
            r_med=float(h.max() / (_median(h) + eps)),
            dominance_mean=_mean(full_ratio),
            dominance_median=_median(full_ratio),
            within_mean=_mean(within_ratio),
            within_median=_median(within_ratio),
            n_sampled=idx.numel(),
            n_zero_diagonal=int((~defined).sum()),
        )
    return result


def _mean(x: Tensor) -> float:
    return float(x.mean()) if x.numel() else float("nan")


def _median(x: Tensor) -> float:
    return float(x.quantile(0.5)) if x.numel() else float("nan")
