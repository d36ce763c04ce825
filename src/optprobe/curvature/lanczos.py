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

from optprobe.curvature.operator import CurvatureOperator


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
    op: CurvatureOperator,
    k: int = 1,
    bottom: bool = False,
    tol: float = 1e-4,
    max_iter: int = 100,
    seed: int = 0,
) -> Spectrum:
    """λ_1 ≥ … ≥ λ_k (and λ_min) of H by Lanczos; stops when every tracked Ritz pair (θ, y) has residual
    r = ‖H y − θ y‖ = |β_m s_m| ≤ tol·|θ| (s_m: last entry of its eigenvector of the tridiagonal T_m).

    What ``converged`` guarantees, without knowing the spectrum: each reported θ lies within r ≤ tol·|θ| of
    *some* eigenvalue of H (the residual bound), and θ_i ≤ λ_i, θ_min ≥ λ_min (Cauchy interlacing). It does
    not prove that this eigenvalue is λ_i: while the Krylov space holds little of λ_i's eigenvector (a start
    with less weight on it than on a nearby eigenvalue, or a cluster narrower than about tol·|θ| not yet
    resolved), θ can converge to a lower eigenvalue, and nothing computed from the Krylov space can tell
    (eigenvalues 10 and 9.99 among 60 at tol 1e-4: 6% of random starts stopped at 9.99). The Kato–Temple
    estimate r²/gap cannot either: it needs the gap to the *true* next eigenvalue, and with the gap to the
    next Ritz value it also stops on unresolved mixtures (issue #14). A repeated
    eigenvalue is found once (one Krylov space sees one vector of each eigenspace), so with k > 1 the next
    Ritz value approximates the next *distinct* eigenvalue. ``converged`` is also true when the Krylov space
    became invariant or reached the dimension of H (then the Ritz values are exact)."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    q = torch.randn(op.dim, generator=gen, dtype=torch.float64).to(dtype=op.dtype, device=op.device)
    steps = min(max_iter, op.dim)
    basis = _Basis(q / q.norm(), steps)
    alphas: list[float] = []
    betas: list[float] = []
    for m in range(1, steps + 1):
        w = op(basis.last)
        alphas.append(float(w @ basis.last))
        w = basis.orthogonalise(w)
        beta = float(w.norm())
        theta, vecs = eigh_tridiagonal(np.array(alphas), np.array(betas))
        tracked = list(range(m - 1, max(m - 1 - k, -1), -1)) + ([0] if bottom else [])
        residuals = np.abs(beta * vecs[-1, tracked])
        converged = m >= k and bool(np.all(residuals <= tol * np.abs(theta[tracked])))
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


def spectral_norm(op: CurvatureOperator, tol: float = 1e-4, max_iter: int = 100, seed: int = 0) -> float:
    """‖H‖₂ = max(|λ_max|, |λ_min|)."""
    return sharpness(op, bottom=True, tol=tol, max_iter=max_iter, seed=seed).spectral_norm
