"""Hutch++ (Meyer, Musco, Musco & Woodruff 2021): tr A = tr(QᵀAQ) + tr((I−QQᵀ) A (I−QQᵀ)), the first term
exact on a sketch Q = orth(A S), the second by Hutchinson on what the sketch leaves.

With m products (m/3 for A S, m/3 for A Q, m/3 residual probes) its error falls like 1/m where Hutchinson's
falls like 1/√m, when the spectrum is dominated by a few large eigenvalues (low rank plus noise, the usual
shape of a network's Hessian); on a flat spectrum the sketch buys nothing and Hutchinson's 3x more probes
win. Memory: the d × m/3 sketch Q, besides the chunk of ``probes_at_once`` products.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import Tensor

from optprobe.curvature.hutchinson import TraceEstimate
from optprobe.curvature.operator import CurvatureOperator
from optprobe.curvature.probes import probe_products, rademacher


def hutchpp_trace(
    op: CurvatureOperator, n_hvps: int = 99, seed: int = 0, probes_at_once: int = 32
) -> TraceEstimate:
    """tr A ≈ tr(QᵀAQ) + (1/k) Σ_i g_iᵀ(I−QQᵀ)A(I−QQᵀ)g_i, Q = orth(A S); standard error of the second term.

    ``n_hvps`` = m is split into k_s = ⌊m/3⌋ sketch probes S, k_s products A Q and k = m − 2 k_s ≥ 2
    residual probes g (Rademacher, from ``seed``); ``n_probes`` of the result is m.
    """
    sketch = n_hvps // 3
    residual = n_hvps - 2 * sketch
    if sketch < 1 or residual < 2:
        raise ValueError(f"n_hvps must be at least 4 (1 sketch probe, 2 residual probes), got {n_hvps}")
    products = torch.cat([hv for _, _, hv in probe_products(op, rademacher, sketch, seed, probes_at_once)])
    q = torch.linalg.qr(products.T.double()).Q.to(op.dtype)  # (d, k_s), orthonormal columns
    aq = torch.cat([op(q[:, i : i + probes_at_once].T) for i in range(0, sketch, probes_at_once)])
    exact_part = float((q.T * aq).sum())  # tr(QᵀAQ) = Σ_i q_iᵀ A q_i
    samples = []
    for v in _residual_probes(op, q, residual, seed + 1, probes_at_once):
        samples.append((v * op(v)).sum(dim=1).double())
    s = torch.cat(samples)
    return TraceEstimate(exact_part + float(s.mean()), float(s.std()) / math.sqrt(residual), n_hvps)


def _residual_probes(op: CurvatureOperator, q: Tensor, n: int, seed: int, at_once: int) -> Iterator[Tensor]:
    """Chunks of (I − QQᵀ) g for Rademacher g from ``seed``, in ``op``'s dtype and device."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    for start in range(0, n, at_once):
        g = rademacher(min(at_once, n - start), op.dim, gen).to(dtype=op.dtype, device=op.device)
        yield g - (g @ q) @ q.T
