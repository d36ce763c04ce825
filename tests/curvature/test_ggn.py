"""GGN-vector products against the exact Jᵀ ∇²_f ℓ J (float64) and against curvlinops' GGNLinearOperator."""

import pytest
import torch
from torch import nn

from optprobe.curvature import GGNOperator, ParamLayout, SplitLoss
from optprobe.errors import OptprobeError
from optprobe.evaluation import Evaluator, trained_parameters


def _model_fn(model, batch):
    return model(batch[0])


def _xent(f, batch):
    return nn.functional.cross_entropy(f, batch[1])


def _mse(f, batch):
    return 0.5 * ((f - batch[1]) ** 2).sum(dim=1).mean()


def _setup(loss: str, dropout: float = 0.0):
    torch.manual_seed(0)
    dt = torch.float64
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Dropout(dropout), nn.Linear(5, 3)).to(dt)
    x = torch.randn(10, 4, dtype=dt)
    y = torch.randint(0, 3, (10,)) if loss == "ce" else torch.randn(10, 3, dtype=dt)
    split = SplitLoss(_model_fn, _xent if loss == "ce" else _mse)
    return model, (x, y), split


def exact_ggn(evaluator: Evaluator, split: SplitLoss, batch, rng_seed: int | None = None) -> torch.Tensor:
    """G = Jᵀ ∇²_f ℓ J with J = ∂f/∂θ by jacrev and ∇²_f ℓ by torch.func.hessian, on flat vectors."""
    params = {k: p.detach() for k, p in trained_parameters(evaluator.model).items()}
    layout = ParamLayout.of(params)
    flat = layout.flatten(params)

    def outputs(theta):
        with torch.random.fork_rng():
            if rng_seed is not None:
                torch.manual_seed(rng_seed)
            return evaluator.outputs_at(split.model_fn, layout.unflatten(theta), batch)

    f = outputs(flat)
    jac = torch.func.jacrev(outputs)(flat).reshape(f.numel(), -1)
    h_out = torch.func.hessian(lambda g: split.output_loss(g.reshape(f.shape), batch))(f.reshape(-1))
    return jac.T @ h_out @ jac


@pytest.mark.parametrize("loss", ["ce", "mse"])
def test_ggn_products_equal_the_exact_ggn(loss):
    model, batch, split = _setup(loss)
    evaluator = Evaluator(model, split)
    g = exact_ggn(evaluator, split, batch)
    op = GGNOperator(evaluator, trained_parameters(model), batch)
    v = torch.randn(4, op.dim, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(op(v), v @ g, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(op(v[0]), g @ v[0], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(op @ v.T, g @ v.T, rtol=1e-10, atol=1e-12)
    assert op.n_hvps == 4 + 1 + 4
    assert torch.linalg.eigvalsh(g).min() > -1e-12  # convex output loss: G is PSD


def test_ggn_with_dropout_uses_one_mask_for_j_and_jt():
    """J v and Jᵀ u must use the same dropout mask: then G is symmetric and equals the exact GGN of that
    mask (the operator's RNG state is the one at construction, seeded here)."""
    model, batch, split = _setup("ce", dropout=0.5)
    evaluator = Evaluator(model, split)
    torch.manual_seed(7)
    op = GGNOperator(evaluator, trained_parameters(model), batch)
    g = exact_ggn(evaluator, split, batch, rng_seed=7)
    torch.rand(1000)  # training moves the global RNG on; the operator must not follow it
    eye = torch.eye(op.dim, dtype=torch.float64)
    dense = op(eye)
    torch.testing.assert_close(op(eye[5]), g[5], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(dense, g, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(dense, dense.T, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("loss", ["ce", "mse"])
def test_ggn_equals_curvlinops(loss):
    curvlinops = pytest.importorskip("curvlinops")
    model, batch, split = _setup(loss)
    evaluator = Evaluator(model, split)
    ours = GGNOperator(evaluator, trained_parameters(model), batch)
    # for MSE theirs is the GGN of Σ_n Σ_c (f − y)² (output Hessian 2I), ours of (1/B) Σ_n ½ Σ_c (f − y)²
    criterion = nn.CrossEntropyLoss() if loss == "ce" else nn.MSELoss(reduction="sum")
    theirs = curvlinops.GGNLinearOperator(
        model, criterion, list(model.parameters()), [batch], check_deterministic=False
    )
    scale = 1.0 if loss == "ce" else 0.5 / batch[0].shape[0]
    v = torch.randn(ours.dim, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(ours @ v, scale * (theirs @ v), rtol=1e-10, atol=1e-12)


def test_ggn_needs_a_split_loss():
    model, batch, split = _setup("ce")
    with pytest.raises(OptprobeError, match="SplitLoss"):
        GGNOperator(Evaluator(model, split.__call__), trained_parameters(model), batch)
    op = GGNOperator(Evaluator(model, split.__call__), trained_parameters(model), batch, split=split)
    assert op.dim == sum(p.numel() for p in model.parameters())
