"""Extreme Hessian eigenvalues by Lanczos with full reorthogonalisation.

Each step multiplies one vector, so with ``method="auto"`` every product after the first is a single
backward pass through the operator's stored gradient graph (see :mod:`optprobe.curvature.hvp`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.linalg import eigh_tridiagonal
from torch import Tensor

from optprobe.curvature.hvp import HessianOperator


@dataclass(frozen=True)
class Spectrum:
    """Top-k Ritz values (descending), the smallest one when asked, and what it cost."""

    top: list[float]
    bottom: float | None
    n_hvps: int
    converged: bool

    @property
    def spectral_norm(self) -> float:
        """‖H‖₂ = max(|λ_max|, |λ_min|); needs the bottom eigenvalue."""
        if self.bottom is None:
            raise ValueError("spectral_norm needs λ_min: call sharpness(..., bottom=True)")
        return max(abs(self.top[0]), abs(self.bottom))


def sharpness(
    op: HessianOperator,
    k: int = 1,
    bottom: bool = False,
    tol: float = 1e-4,
    max_iter: int = 100,
    seed: int = 0,
) -> Spectrum:
    """λ_1 ≥ … ≥ λ_k (and λ_min) of H by Lanczos; stops when every tracked Ritz value θ moved by ≤ tol·|θ|
    since the previous step AND its error estimate min(r, r²/gap) ≤ tol·|θ| (Kato–Temple, residual
    r = |β_m y_m|, gap to the nearest other Ritz value)."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    q = torch.randn(op.dim, generator=gen, dtype=torch.float64).to(dtype=op.dtype, device=op.device)
    steps = min(max_iter, op.dim)
    basis = _Basis(q / q.norm(), steps)
    alphas: list[float] = []
    betas: list[float] = []
    previous = np.full(k + 1, np.nan)
    for m in range(1, steps + 1):
        w = op(basis.last)
        alphas.append(float(w @ basis.last))
        w = basis.orthogonalise(w)
        beta = float(w.norm())
        theta, vecs = eigh_tridiagonal(np.array(alphas), np.array(betas))
        tracked = list(range(m - 1, max(m - 1 - k, -1), -1)) + ([0] if bottom else [])
        current = theta[tracked]
        bounds = [_error_bound(theta, vecs, beta, i) for i in tracked]
        settled = current.size == previous.size and np.all(
            np.abs(current - previous) <= tol * np.abs(current)
        )
        converged = bool(settled) and all(
            b <= tol * abs(theta[i]) for b, i in zip(bounds, tracked, strict=True)
        )
        previous = current
        invariant = beta <= 1e-12 * max(1.0, float(np.abs(theta).max()))
        if converged or invariant or m == steps:
            top = [float(t) for t in theta[::-1][:k]]
            exact = invariant or m == op.dim
            return Spectrum(top, float(theta[0]) if bottom else None, m, converged or exact)
        betas.append(beta)
        basis.append(w / beta)
    raise AssertionError("unreachable: the loop returns at m == steps")


class _Basis:
    """Orthonormal Lanczos vectors q_1 … q_m, the rows of a buffer that doubles when full (up to ``most``)."""

    def __init__(self, first: Tensor, most: int) -> None:
        self._rows = torch.empty(min(most, 16), first.numel(), dtype=first.dtype, device=first.device)
        self._rows[0] = first
        self._size = 1
        self._most = most

    @property
    def last(self) -> Tensor:
        return self._rows[self._size - 1]

    def append(self, q: Tensor) -> None:
        if self._size == self._rows.shape[0]:
            grown = self._rows.new_empty(min(2 * self._size, self._most), self._rows.shape[1])
            grown[: self._size] = self._rows
            self._rows = grown
        self._rows[self._size] = q
        self._size += 1

    def orthogonalise(self, w: Tensor) -> Tensor:
        """w ← w − Q Qᵀ w with Q = [q_1 … q_m], twice (Kahan–Parlett: twice is enough)."""
        q = self._rows[: self._size]
        for _ in range(2):
            w = torch.addmv(w, q.T, q @ w, alpha=-1)
        return w


def _error_bound(theta: np.ndarray, vecs: np.ndarray, beta: float, i: int) -> float:
    residual = abs(beta * vecs[-1, i])
    gaps = np.abs(np.delete(theta, i) - theta[i])
    if gaps.size == 0 or gaps.min() == 0:
        return residual
    return min(residual, residual**2 / float(gaps.min()))


def spectral_norm(op: HessianOperator, tol: float = 1e-4, max_iter: int = 100, seed: int = 0) -> float:
    """‖H‖₂ = max(|λ_max|, |λ_min|)."""
    return sharpness(op, bottom=True, tol=tol, max_iter=max_iter, seed=seed).spectral_norm
