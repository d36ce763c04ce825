"""The Hessian of F over an evaluation loader against the exact float64 Hessian of the weighted chunk mean."""

import warnings

import pytest
import torch
from torch import nn

from optprobe import Probe
from optprobe.curvature import (
    FullHessianOperator,
    HessianOperator,
    ParamLayout,
    hessian_l11,
    hessian_trace,
    sharpness,
)
from optprobe.errors import OptprobeError, ProbeWarning
from optprobe.evaluation import Evaluator, chunk_seed, trained_parameters
from optprobe.metrics.curvature import DiagonalGeometry, HessianL11, HessianTrace, Sharpness
from optprobe.probe import ProbeConfig

SIZES = (5, 7, 4)  # unequal chunks: F weights each by its size


def _xent(model, batch):
    return nn.functional.cross_entropy(model(batch[0]), batch[1])


def _setup(kind: str = "plain"):
    torch.manual_seed(0)
    dt = torch.float64
    layers: list[nn.Module] = [nn.Linear(4, 5)]
    if kind == "batchnorm":
        layers.append(nn.BatchNorm1d(5))
    layers += [nn.Tanh(), nn.Dropout(0.3 if kind == "dropout" else 0.0), nn.Linear(5, 3)]
    model = nn.Sequential(*layers).to(dt).train()
    loader = [(torch.randn(n, 4, dtype=dt), torch.randint(0, 3, (n,))) for n in SIZES]
    return Evaluator(model, _xent), loader


def _f(evaluator, loader, layout, seed):
    """θ ↦ F(θ) = Σ_c n_c ℓ(θ, z_c) / Σ_c n_c, chunk c's dropout from the RNG seeded chunk_seed(seed, c)."""

    def f(theta):
        total = 0.0
        for c, chunk in enumerate(loader):
            with torch.random.fork_rng():
                torch.manual_seed(chunk_seed(seed, c))
                total = total + len(chunk[1]) * evaluator.loss_at(layout.unflatten(theta), chunk)
        return total / sum(SIZES)

    return f


@pytest.mark.parametrize("kind", ["plain", "dropout", "batchnorm"])
def test_products_equal_the_exact_hessian_of_f(kind):
    evaluator, loader = _setup(kind)
    params = {k: p.detach() for k, p in trained_parameters(evaluator.model).items()}
    layout = ParamLayout.of(params)
    flat = layout.flatten(params)
    f = _f(evaluator, loader, layout, seed=3)
    # torch.func.hessian vmaps, which refuses random ops and BatchNorm's in-place buffer update
    h = torch.func.hessian(f)(flat) if kind == "plain" else torch.autograd.functional.hessian(f, flat)
    # the F here is the F of the full-batch metrics: same value and gradient
    value, grad, n = evaluator.full_loss_and_grad(params, loader, seed=3)
    assert n == sum(SIZES)
    torch.testing.assert_close(value, f(flat), rtol=1e-12, atol=1e-14)
    exact_grad = torch.autograd.functional.jacobian(f, flat)
    torch.testing.assert_close(layout.flatten(grad), exact_grad, rtol=1e-10, atol=1e-12)
    op = FullHessianOperator(evaluator, params, loader, seed=3)
    torch.rand(100)  # the global RNG moves on; the operator's masks must not
    v = torch.randn(3, op.dim, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ProbeWarning)  # BatchNorm: vmap falls back to double backward
        torch.testing.assert_close(op(v), v @ h, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(op(v[0]), h @ v[0], rtol=1e-10, atol=1e-12)
        top = sharpness(op, tol=1e-10).top[0]
    assert top == pytest.approx(float(torch.linalg.eigvalsh(h)[-1]), rel=1e-8)
    assert op.n_examples == sum(SIZES)
    assert op.n_chunk_hvps == len(SIZES) * op.n_hvps


def test_the_hessian_of_f_is_not_the_hessian_of_one_chunk():
    """Guards the test above: with another seed or without the weights the answer changes."""
    evaluator, loader = _setup("dropout")
    params = trained_parameters(evaluator.model)
    layout = ParamLayout.of(params)
    flat = layout.flatten(params).detach()
    h = torch.autograd.functional.hessian(_f(evaluator, loader, layout, seed=3), flat)
    other = FullHessianOperator(evaluator, params, loader, seed=4)(torch.eye(layout.dim, dtype=torch.float64))
    assert (other - h).abs().max() > 1e-4


def test_keep_graphs_gives_the_same_products_and_trace():
    evaluator, loader = _setup("dropout")
    params = trained_parameters(evaluator.model)
    fresh = FullHessianOperator(evaluator, params, loader, seed=2)
    kept = FullHessianOperator(evaluator, params, loader, seed=2, keep_graphs=True)
    v = torch.randn(fresh.dim, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(kept(v), fresh(v), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(kept(v), fresh(v), rtol=1e-12, atol=1e-14)  # second pass: the kept graphs
    assert hessian_trace(kept, 10).mean == pytest.approx(hessian_trace(fresh, 10).mean, rel=1e-10)
    assert fresh.batch_hvps(batch=4) == pytest.approx(fresh.n_hvps * sum(SIZES) / 4)


def test_a_loader_that_changes_between_passes_is_refused():
    evaluator, loader = _setup()

    class Shrinking:
        def __init__(self):
            self.passes = 0

        def __iter__(self):
            self.passes += 1
            return iter(loader[: 4 - self.passes])

    op = FullHessianOperator(evaluator, trained_parameters(evaluator.model), Shrinking())
    op(torch.zeros(op.dim, dtype=torch.float64))
    with pytest.raises(OptprobeError, match="same chunks"):
        op(torch.zeros(op.dim, dtype=torch.float64))


def test_periodic_metrics_on_f_through_the_probe():
    evaluator, loader = _setup("dropout")
    model = evaluator.model
    params = trained_parameters(model)
    layout = ParamLayout.of(params)
    config = ProbeConfig(seed=5, metrics=())
    exact = torch.autograd.functional.hessian(
        _f(evaluator, loader, layout, seed=5), layout.flatten(params).detach()
    )
    metrics = [Sharpness(every=1, tol=1e-8, on="eval"), HessianTrace(every=1, n_probes=4, on="eval")]
    probe = Probe(model, _xent, config=config, eval_loader=loader, periodic=metrics, out_dir=None)
    row = _one_step(probe, model, loader)
    assert row["sharpness"] == pytest.approx(float(torch.linalg.eigvalsh(exact)[-1]), rel=1e-6)
    assert row["sharpness_batch_hvps"] == pytest.approx(row["sharpness_hvps"] * sum(SIZES) / SIZES[0])
    assert "hessian_trace_batch_hvps" in row
    with pytest.raises(OptprobeError, match="eval_loader"):
        Probe(model, _xent, config=config, periodic=[Sharpness(on="eval")], out_dir=None)


def test_diagonal_geometry_and_l11_on_f_are_those_of_the_exact_hessian_of_f():
    """on="eval": R_med and diagonal dominance per layer (every coordinate sampled) from the exact ∇²F, the
    loss level F(x_t), and the Cauchy ‖H‖₁,₁ estimate equal to the same estimator (same probes) applied to
    the exact ∇²F as a matrix."""
    from tests.curvature.conftest import Quadratic

    evaluator, loader = _setup("dropout")
    model = evaluator.model
    params = trained_parameters(model)
    layout = ParamLayout.of(params)
    f = _f(evaluator, loader, layout, seed=5)
    flat = layout.flatten(params).detach()
    exact = torch.autograd.functional.hessian(f, flat)
    metrics = [DiagonalGeometry(every=1, per_layer=1000, n_boot=10, on="eval"),
               HessianL11(every=1, n_probes=30, on="eval")]  # fmt: skip
    probe = Probe(model, _xent, config=ProbeConfig(seed=5, metrics=()), eval_loader=loader, periodic=metrics,
                  out_dir=None)  # fmt: skip
    row = _one_step(probe, model, loader)
    assert row["r_med_loss"] == pytest.approx(float(f(flat)), rel=1e-12)
    for layer, idx in layout.blocks("layer").items():
        diagonal = exact.diagonal()[idx].abs()
        r_med = diagonal.max() / (diagonal.quantile(0.5) + 1e-12)
        assert row[f"r_med/{layer}"] == pytest.approx(float(r_med), rel=1e-9)
        dominance = (exact[idx].abs().sum(dim=1) - diagonal) / diagonal
        assert row[f"diag_dominance_mean/{layer}"] == pytest.approx(float(dominance.mean()), rel=1e-9)
        median = float(dominance.quantile(0.5))
        assert row[f"diag_dominance_median/{layer}"] == pytest.approx(median, rel=1e-9)
    as_matrix = Evaluator(Quadratic(exact), lambda m, b: m(b))
    same = hessian_l11(HessianOperator(as_matrix, trained_parameters(as_matrix.model), None), 30, 0)
    assert row["hessian_l11"] == pytest.approx(same.l11, rel=1e-9)
    assert row["r_med_batch_hvps"] > 0 and row["hessian_l11_batch_hvps"] > 0


def _one_step(probe, model, loader):
    """One Probe step at the current point (no optimizer step): the row holds the periodic metrics."""
    probe.begin_step(loader[0])
    _xent(model, loader[0]).backward()
    row = probe.end_step()
    model.zero_grad()
    return row
