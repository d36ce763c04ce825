"""Batched sampled Hessian rows (one vmap call per chunk, tangents on the sampled layer only) against
one-at-a-time double backward and the exact Hessian, in float64; r_med's bootstrap interval."""

import warnings

import pytest
import torch

from optprobe.curvature import HessianOperator, diagonal_geometry, hessian_rows, sample_coordinates
from optprobe.curvature.hessian_diagonal import bootstrap_r_med
from optprobe.errors import ProbeWarning
from optprobe.evaluation import Evaluator, trained_parameters
from optprobe.experiments.models.gpt import GPT
from optprobe.metrics.curvature import DiagonalGeometry

from .conftest import Case


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ProbeWarning)
        yield


def gpt_loss(model: torch.nn.Module, batch: tuple) -> torch.Tensor:
    x, y = batch
    return torch.nn.functional.cross_entropy(model(x).reshape(-1, 11), y.reshape(-1))


def tiny_gpt() -> Case:
    torch.manual_seed(0)
    model = GPT(vocab_size=11, block_size=5, n_layer=2, n_head=2, n_embd=4, math_attention=True).double()
    batch = (torch.randint(0, 11, (3, 5)), torch.randint(0, 11, (3, 5)))
    return Case("gpt", Evaluator(model, gpt_loss), batch)


def test_batched_rows_equal_one_at_a_time_and_exact_on_a_transformer():
    case = tiny_gpt()
    one = case.operator(method="double_backward")
    batched = case.operator(method="forward", chunk_size=None)
    exact = case.hessian()
    for layer, idx in sample_coordinates(one, per_block=7, seed=3).items():
        rows = hessian_rows(batched, idx)  # one vmap call, tangents on this layer's parameters only
        singles = torch.cat([hessian_rows(one, i.view(1)) for i in idx])
        torch.testing.assert_close(rows, singles, rtol=1e-12, atol=1e-14, msg=layer)
        torch.testing.assert_close(rows, exact[idx], rtol=1e-12, atol=1e-14, msg=layer)


def test_operator_within_rejects_nothing_it_should_keep(case):
    """Restricting tangents to the parameters holding a stack's support leaves H V unchanged."""
    op = case.operator(method="forward")
    idx = op.layout.blocks()[next(iter(op.layout.blocks()))][:3]
    basis = torch.zeros(3, op.dim, dtype=op.dtype)
    basis[torch.arange(3), idx] = 1.0
    assert op.layout.holding(idx) == tuple(n for n in op.layout.names if n in op.layout.holding(idx))
    torch.testing.assert_close(op(basis, within=op.layout.holding(idx)), case.hessian()[idx], rtol=1e-12,
                               atol=1e-14)  # fmt: skip


def test_diagonal_geometry_batched_equals_unbatched():
    case = tiny_gpt()
    one = diagonal_geometry(case.operator(method="double_backward"), per_block=9, seed=1, rows_at_once=1)
    many = diagonal_geometry(case.operator(method="forward"), per_block=9, seed=1, rows_at_once=9)
    assert one.keys() == many.keys()
    for layer in one:
        for field in ("r_med", "r_med_low", "r_med_high", "dominance_mean", "within_median"):
            assert getattr(many[layer], field) == pytest.approx(getattr(one[layer], field), rel=1e-10)


def test_bootstrap_interval_is_the_percentiles_of_resampled_r_med():
    h = torch.tensor([0.5, 1.0, 2.0, 3.0, 10.0], dtype=torch.float64)
    low, high = bootstrap_r_med(h, eps=0.0, n_boot=400, seed=5)
    gen = torch.Generator().manual_seed(5)
    draws = h[torch.randint(5, (400, 5), generator=gen)]
    r = (draws.max(1).values / draws.median(1).values).numpy()  # torch median = lower middle: odd n here
    import numpy as np

    assert (low, high) == pytest.approx((np.quantile(r, 0.025), np.quantile(r, 0.975)), rel=1e-12)
    assert low <= 10.0 / 2.0 <= high


def test_loss_levels_trigger_the_measurement_once_each():
    case = tiny_gpt()
    params = trained_parameters(case.evaluator.model)
    loss = float(case.evaluator.loss(params, case.batch))
    metric = DiagonalGeometry(every=1, per_layer=3, at_loss=[loss + 2, loss + 1, loss - 1])
    first = metric.compute(case.evaluator, params, case.batch, 0)
    assert first["r_med_level"] == loss + 1 and first["r_med_loss"] == pytest.approx(loss)
    assert "r_med/wte" in first and metric.passed == 2 and metric.due(1)
    assert metric.compute(case.evaluator, params, case.batch, 1) == {}  # loss - 1 not reached
    fresh = DiagonalGeometry(every=1, per_layer=3, at_loss=[loss + 2, loss + 1, loss - 1])
    fresh.load_state_dict(metric.state_dict())
    assert fresh.passed == 2
    done = DiagonalGeometry(every=1, at_loss=[loss + 1])
    done.load_state_dict({"passed": 1})
    assert not done.due(5)


def test_operator_accepts_within_for_double_backward_too():
    case = tiny_gpt()
    op = HessianOperator(case.evaluator, trained_parameters(case.evaluator.model), case.batch,
                         method="double_backward")  # fmt: skip
    v = torch.zeros(op.dim, dtype=torch.float64)
    v[0] = 1.0
    torch.testing.assert_close(op(v, within=("wte.weight",)), case.hessian()[0], rtol=1e-12, atol=1e-14)


def test_probe_checkpoint_keeps_which_loss_levels_were_measured():
    from optprobe.probe import Probe

    case = tiny_gpt()
    model = case.evaluator.model

    def probe() -> Probe:
        metric = DiagonalGeometry(every=1, per_layer=2, at_loss=[100.0, 99.0, -1.0])
        return Probe(model, gpt_loss, periodic=[metric], periodic_batch=case.batch, out_dir=None)

    first = probe()
    first.periodic[0].passed = 2  # as after crossing 100 and 99
    again = probe()
    again.load_state_dict(first.state_dict())
    assert again.periodic[0].passed == 2 and again.periodic[0].due(3)
