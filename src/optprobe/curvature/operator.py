"""What every curvature estimator needs from a symmetric operator A on flat parameter vectors, and the
ways to hand one to other solvers: ``A @ v`` on tensors and :func:`as_linear_operator` for SciPy.

:class:`~optprobe.curvature.hvp.HessianOperator` (∇²ℓ on one batch),
:class:`~optprobe.curvature.full.FullHessianOperator` (∇²F over an evaluation loader) and
:class:`~optprobe.curvature.ggn.GGNOperator` (the generalised Gauss–Newton matrix) all satisfy
:class:`CurvatureOperator`, so Lanczos, Hutchinson, Hutch++, Cauchy probes and the spectral density
accept any of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor

if TYPE_CHECKING:
    from scipy.sparse.linalg import LinearOperator

    from optprobe.curvature.hvp import ParamLayout


@runtime_checkable
class CurvatureOperator(Protocol):
    """v ↦ A v for v of shape (d,), or row-wise A vᵢ for a stack V of shape (k, d); counts its products.

    ``within`` names the parameters outside which every v is zero (an operator may skip work with it).
    """

    layout: ParamLayout
    dtype: torch.dtype
    device: torch.device
    n_hvps: int

    @property
    def dim(self) -> int: ...

    def __call__(self, v: Tensor, within: Sequence[str] | None = None) -> Tensor: ...


class MatmulMixin:
    """``A @ v`` for v of shape (d,) and ``A @ M`` for a matrix M of shape (d, k) (columns multiplied)."""

    def __matmul__(self: CurvatureOperator, other: Tensor) -> Tensor:
        if not isinstance(other, Tensor):
            return NotImplemented
        if other.dim() == 1:
            return self(other)
        if other.dim() == 2:
            return self(other.T).T
        raise ValueError(f"A @ x needs x of shape (d,) or (d, k), got {tuple(other.shape)}")

    def to_scipy(self: CurvatureOperator) -> LinearOperator:
        """This operator as a ``scipy.sparse.linalg.LinearOperator`` (float64 NumPy in and out)."""
        return as_linear_operator(self)


def as_linear_operator(op: CurvatureOperator) -> LinearOperator:
    """A as a symmetric ``scipy.sparse.linalg.LinearOperator``: x ↦ A x on float64 NumPy arrays."""
    from scipy.sparse.linalg import LinearOperator

    def matmat(x: np.ndarray) -> np.ndarray:
        stack = torch.as_tensor(np.ascontiguousarray(x.T)).to(dtype=op.dtype, device=op.device)
        return op(stack).T.detach().cpu().double().numpy()

    def matvec(x: np.ndarray) -> np.ndarray:
        return matmat(np.asarray(x).reshape(-1, 1)).reshape(-1)

    return LinearOperator(
        (op.dim, op.dim), matvec=matvec, rmatvec=matvec, matmat=matmat, rmatmat=matmat, dtype=np.float64
    )
