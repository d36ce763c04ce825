"""Seeded random probes v_1, …, v_K, drawn and multiplied by H a chunk of rows at a time.

Estimators that average over K probes never hold the K × d probe matrix or its product: they receive
(V_c, H V_c) for consecutive chunks of at most ``at_once`` probes, so the transient memory is
2 · at_once · d entries whatever K is. The probes come from one CPU generator seeded with ``seed`` and
drawn in row order, so the concatenated chunks are the same K × d matrix for every ``at_once``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch
from torch import Tensor

from optprobe.curvature.operator import CurvatureOperator

Draw = Callable[[int, int, torch.Generator], Tensor]
"""(rows, dim, generator) ↦ a float64 CPU tensor of shape (rows, dim) with i.i.d. entries."""


def rademacher(rows: int, dim: int, gen: torch.Generator) -> Tensor:
    """I.i.d. ±1 entries (P = ½ each): E[v vᵀ] = I."""
    return torch.randint(0, 2, (rows, dim), generator=gen).to(torch.float64).mul_(2).sub_(1)


def cauchy(rows: int, dim: int, gen: torch.Generator) -> Tensor:
    """I.i.d. standard Cauchy entries, density 1 / (π (1 + t²)), by the inverse CDF tan(π (u − ½)) with
    u ~ U[0, 1) (the formula ``Tensor.cauchy_`` uses, at half its cost on CPU)."""
    return torch.rand(rows, dim, dtype=torch.float64, generator=gen).sub_(0.5).mul_(math.pi).tan_()


def probe_products(
    op: CurvatureOperator,
    draw: Draw,
    n_probes: int,
    seed: int,
    at_once: int = 32,
    support: Tensor | None = None,
) -> Iterator[tuple[int, Tensor, Tensor]]:
    """(first probe index, V_c, H V_c) for chunks of at most ``at_once`` probes, in ``op``'s dtype and
    device; probes are zero outside ``support`` (flat indices) when it is given."""
    if at_once < 1:
        raise ValueError(f"at_once must be at least 1, got {at_once}")
    gen = torch.Generator(device="cpu").manual_seed(seed)
    mask = None
    if support is not None:
        mask = torch.zeros(op.dim, dtype=op.dtype, device=op.device)
        mask[support.to(op.device)] = 1
    for start in range(0, n_probes, at_once):
        v = draw(min(at_once, n_probes - start), op.dim, gen).to(dtype=op.dtype, device=op.device)
        if mask is not None:
            v = v * mask
        yield start, v, op(v)
