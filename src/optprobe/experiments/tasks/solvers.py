"""Exact minimizers of convex tasks that have no closed form, for their ``reference``."""

import numpy as np
import torch
from torch.utils.data import TensorDataset


def logistic_reference(train: TensorDataset) -> dict[str, torch.Tensor] | None:
    """Unregularised logistic-regression minimizer (weight (1, d), bias (1,)) of `train` by scipy's L-BFGS
    in float64 to gradient norm ~1e-10; None when the data are linearly separable (no finite minimizer,
    detected as a perfect fit) or scipy is missing."""
    try:
        from scipy.optimize import minimize
        from scipy.special import expit
    except ImportError:
        return None
    x, y = (t.double().numpy() for t in train.tensors)
    X = np.hstack([x, np.ones((len(x), 1))])

    def f(w: np.ndarray) -> tuple[float, np.ndarray]:
        z = X @ w
        return float(np.mean(np.logaddexp(0, z) - y * z)), X.T @ (expit(z) - y) / len(y)

    res = minimize(
        f,
        np.zeros(X.shape[1]),
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": 10_000, "gtol": 1e-10, "ftol": 0},
    )
    if np.all((X @ res.x > 0) == (y > 0.5)):
        return None
    w = torch.as_tensor(res.x, dtype=torch.float32)
    return {"weight": w[:-1].view(1, -1), "bias": w[-1:]}
