"""Convex tasks with a known minimizer: least squares, logistic regression, quadratics."""

import torch
from torch import nn
from torch.utils.data import TensorDataset

from optprobe.errors import OptprobeError
from optprobe.experiments.data import synthetic
from optprobe.experiments.data.sklearn_data import load_sklearn
from optprobe.experiments.tasks.losses import logistic_loss, quadratic_loss, squared_loss
from optprobe.experiments.tasks.registry import Task, make_task, register
from optprobe.experiments.tasks.solvers import logistic_reference


@register
def least_squares(
    n_samples: int = 512,
    n_features: int = 32,
    noise: float = 0.1,
    condition: float = 10.0,
    seed: int = 0,
    batch_size: int = 64,
) -> Task:
    """Linear regression, loss 1/2 mean (w.x - y)^2; reference = normal-equations solution."""
    p = synthetic.make_least_squares(n_samples, n_features, noise, condition, seed)
    return make_task(
        lambda: nn.Linear(n_features, 1, bias=False),
        squared_loss,
        p.dataset,
        None,
        batch_size,
        f"least squares, {n_samples} x {n_features}, Hessian condition ~{condition:g}",
        {"weight": p.w_hat.view(1, -1)},
    )


@register
def logistic_breast_cancer(n_features: int = 10, seed: int = 0, batch_size: int = 64) -> Task:
    """Logistic regression on scikit-learn's breast cancer data (first `n_features` standardized features).

    With all 30 features the training set is linearly separable, so the unregularised loss has no
    minimizer; the default 10 "mean" features are not separable and `reference` is the L-BFGS minimizer.
    """
    train, eval = load_sklearn("breast_cancer", seed=seed)
    train, eval = (TensorDataset(d.tensors[0][:, :n_features], d.tensors[1]) for d in (train, eval))
    return make_task(
        lambda: nn.Linear(n_features, 1),
        logistic_loss,
        train,
        eval,
        batch_size,
        f"logistic regression, breast cancer, {n_features} features",
        logistic_reference(train),
    )


@register
def logistic_synthetic(
    n_samples: int = 512, n_features: int = 10, separable: bool = False, seed: int = 0, batch_size: int = 64
) -> Task:
    """Logistic regression on Gaussian data, separable (no minimizer: the implicit-bias regime) or not."""
    train = synthetic.make_logistic(n_samples, n_features, separable, seed)
    kind = "separable" if separable else "non-separable"
    return make_task(
        lambda: nn.Linear(n_features, 1),
        logistic_loss,
        train,
        None,
        batch_size,
        f"logistic regression, synthetic {kind}, {n_samples} x {n_features}",
        logistic_reference(train),
    )


@register
def quadratic(
    dim: int = 50,
    condition: float = 100.0,
    rotated: bool = False,
    noise: float = 0.0,
    n_samples: int = 64,
    seed: int = 0,
    batch_size: int = 64,
    minimizer: str = "random",
    init: str = "zeros",
    precondition: bool = False,
) -> Task:
    """1/2 x^T A x + b^T x, eigenvalues in [1/condition, 1], A diagonal or randomly rotated; x* random, all
    ones or zero (``minimizer``, see ``synthetic.make_quadratic``).

    ``init``: x starts at 0 ("zeros") or at x* + N(0, I) drawn from the run's seed ("normal", as in Xie et
    al. Sec. 4.1), so seeds differ. ``precondition``: Orabona's twin with Hessian diag(A)⁻¹A and the same
    x*. With noise > 0 a batch averages per-sample linear terms b_i (mean b), giving stochastic gradients.
    """
    if init not in ("zeros", "normal"):
        raise OptprobeError(f"init must be 'zeros' or 'normal', got {init!r}")
    q = synthetic.make_quadratic(dim, condition, rotated, noise, n_samples, seed, minimizer, precondition)
    x_star = q.x_star

    def model() -> nn.Module:
        start = x_star + torch.randn(dim) if init == "normal" else torch.zeros(dim)
        return synthetic.QuadraticModel(q.A, start)

    kind = "preconditioned" if precondition else "rotated" if rotated else "diagonal"
    return make_task(
        model,
        quadratic_loss,
        q.dataset,
        None,
        batch_size,
        f"{kind} quadratic, dim {dim}, condition {condition:g}",
        {"x": x_star},
    )
