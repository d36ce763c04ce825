"""Singular-value uniformity of weight matrices (conv kernels reshaped to out × in·k·k)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from optprobe.reductions import layer_of


@dataclass(frozen=True)
class SingularStats:
    """erank = exp(−Σ p_i log p_i) with p_i = σ_i / Σ_j σ_j (Roy & Vetterli), and r_med."""

    effective_rank: float
    r_med: float


def effective_rank(singular_values: Tensor) -> float:
    """exp(H(p)) with p = σ / ‖σ‖₁ (1 ≤ erank ≤ rank)."""
    p = singular_values.double() / singular_values.double().sum()
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def singular_uniformity(
    params: nn.Module | Mapping[str, Tensor], top: int = 1, eps: float = 1e-12
) -> dict[str, SingularStats]:
    """Per weight matrix W (≥ 2-D parameter): erank(σ(W)) and max_i u_i² / (median_i u_i² + ε),
    u_i² = mean over the ``top`` leading left singular vectors of their squared entries.

    Keys are layer names, or the parameter name where a layer holds several matrices."""
    named = dict(params.named_parameters()) if isinstance(params, nn.Module) else dict(params)
    matrices = {name: p for name, p in named.items() if p.dim() >= 2}
    layers = [layer_of(name) for name in matrices]
    result = {}
    for name, weight in matrices.items():
        key = layer_of(name) if layers.count(layer_of(name)) == 1 else name
        u, s, _ = torch.linalg.svd(weight.detach().reshape(weight.shape[0], -1).double(), full_matrices=False)
        energy = u[:, :top].pow(2).mean(dim=1)
        result[key] = SingularStats(effective_rank(s), float(energy.max() / (energy.quantile(0.5) + eps)))
    return result
