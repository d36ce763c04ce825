"""Synthetic convex problems with known solutions: least squares, quadratics, logistic regression.

All generators take a `seed` and use their own `torch.Generator` (float64 internally, float32 out), so they
are deterministic and leave the global RNG untouched.
"""

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import TensorDataset

from optprobe.errors import OptprobeError
from optprobe.optim.rotation import random_orthogonal


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@dataclass
class LeastSquares:
    """Data X (n, d), targets y = X w_true + noise, and `w_hat`, the exact minimizer of mean (Xw - y)^2."""

    X: torch.Tensor
    y: torch.Tensor
    w_true: torch.Tensor
    w_hat: torch.Tensor

    @property
    def dataset(self) -> TensorDataset:
        """(x, y) pairs, float32."""
        return TensorDataset(self.X, self.y)


def make_least_squares(
    n_samples: int = 512, n_features: int = 32, noise: float = 0.1, condition: float = 10.0, seed: int = 0
) -> LeastSquares:
    """Gaussian features with per-feature scales geomspace(1, 1/sqrt(condition)), so the Hessian
    X^T X / n has condition number about `condition`; `w_hat` solves the normal equations (via lstsq)."""
    g = _generator(seed)
    scales = condition ** (-0.5 * torch.linspace(0, 1, n_features, dtype=torch.float64))
    X = torch.randn(n_samples, n_features, generator=g, dtype=torch.float64) * scales
    w_true = torch.randn(n_features, generator=g, dtype=torch.float64)
    y = X @ w_true + noise * torch.randn(n_samples, generator=g, dtype=torch.float64)
    w_hat = torch.linalg.lstsq(X, y.unsqueeze(1)).solution.squeeze(1)
    return LeastSquares(X.float(), y.float(), w_true.float(), w_hat.float())


@dataclass
class Quadratic:
    """f(x) = 1/2 x^T A x + b^T x with A = Q diag(eigenvalues) Q^T (Q = I when not rotated).

    `b_samples` (n, d) are b plus zero-mean noise: the per-sample objectives 1/2 x^T A x + b_i^T x average
    to f when their mean is b, which gives stochastic gradients for the same minimizer x* = -A^{-1} b.
    """

    A: torch.Tensor
    b: torch.Tensor
    eigenvalues: torch.Tensor
    b_samples: torch.Tensor

    @property
    def x_star(self) -> torch.Tensor:
        """The minimizer -A^{-1} b."""
        return -torch.linalg.solve(self.A.double(), self.b.double()).float()

    @property
    def f_star(self) -> float:
        """The minimum value -1/2 b^T A^{-1} b."""
        return float(0.5 * self.b.double() @ self.x_star.double())

    @property
    def dataset(self) -> TensorDataset:
        """One-tensor samples (b_i,)."""
        return TensorDataset(self.b_samples)


def make_quadratic(
    dim: int = 50,
    condition: float = 100.0,
    rotated: bool = False,
    noise: float = 0.0,
    n_samples: int = 64,
    seed: int = 0,
    minimizer: str = "random",
    precondition: bool = False,
) -> Quadratic:
    """Quadratic with eigenvalues geomspace(1, 1/condition) (so L = 1, mu = 1/condition), diagonal A or A
    rotated by a random orthogonal matrix (the diagonal vs rotated comparison of Xie et al., Table 1).
    `noise` is the standard deviation of the per-sample perturbations of b (re-centred to mean exactly b).
    `minimizer`: "random" (b ~ N(0, I)) or "ones" (b = −A·1, so x* = 1: from x_0 = 0 every coordinate is
    equally far, the setting where sign-like steps exploit a near-diagonal Hessian) or "zero" (b = 0, so
    x* = 0 and f(x) = ½ xᵀAx is exactly the gap to the optimum, free of float32 cancellation).
    `precondition`: Orabona's twin f̃_Λ with Hessian ΛA, Λ = diag(A)⁻¹ (the identity for diagonal A) and
    the same minimizer (b̃ = Λb); a scale-free method runs the same iterates on f and f̃_Λ."""
    if minimizer not in ("random", "ones", "zero"):
        raise OptprobeError(f"minimizer must be 'random', 'ones' or 'zero', got {minimizer!r}")
    if precondition and rotated:
        raise OptprobeError("precondition needs a diagonal A (Λ·A is a Hessian only when A is diagonal)")
    g = _generator(seed)
    eig = condition ** -torch.linspace(0, 1, dim, dtype=torch.float64)
    A = torch.diag(eig)
    if rotated:
        Q = random_orthogonal(dim, g)
        A = Q @ A @ Q.T
        A = 0.5 * (A + A.T)
    if minimizer == "random":
        b = torch.randn(dim, generator=g, dtype=torch.float64)
    else:
        b = -A.sum(dim=1) if minimizer == "ones" else torch.zeros(dim, dtype=torch.float64)
    if precondition:
        scale = 1.0 / torch.diagonal(A)
        A, b, eig = scale[:, None] * A, scale * b, torch.ones(dim, dtype=torch.float64)
    xi = noise * torch.randn(n_samples, dim, generator=g, dtype=torch.float64)
    b_samples = b + (xi - xi.mean(0))
    return Quadratic(A.float(), b.float(), eig.float(), b_samples.float())


class QuadraticModel(nn.Module):
    """The parameter x of a quadratic; forward(b_batch) returns the (B,) values 1/2 x^T A x + b_i^T x."""

    def __init__(self, A: torch.Tensor, init: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("A", A.clone())
        self.x = nn.Parameter(init.clone())

    def forward(self, b: torch.Tensor) -> torch.Tensor:
        """Per-sample objective values for a (B, d) batch of linear terms."""
        return 0.5 * self.x @ self.A @ self.x + b @ self.x


def make_logistic(
    n_samples: int = 512, n_features: int = 10, separable: bool = False, seed: int = 0
) -> TensorDataset:
    """(x, y) with Gaussian x and labels y in {0, 1} (int64): y = [x.w > 0] when `separable`, otherwise
    drawn from Bernoulli(sigmoid(x.w)) with |w| = 2, so the unregularised logistic minimizer is finite."""
    g = _generator(seed)
    X = torch.randn(n_samples, n_features, generator=g)
    w = torch.randn(n_features, generator=g)
    w = 2.0 * w / w.norm()
    logits = X @ w
    if separable:
        y = (logits > 0).long()
    else:
        y = (torch.rand(n_samples, generator=g) < torch.sigmoid(logits)).long()
    return TensorDataset(X, y)
