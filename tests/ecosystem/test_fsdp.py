"""FSDP2 on CPU (gloo, 2 processes): every metric equals a single process on the union of the ranks' batches.

The first layer is ``fully_shard``-ed on its own, the root holds the last layer, which has one output row,
so one rank holds empty shards of it. Training, BatchNorm running statistics included, is bit-identical
with and without the probe.
"""

from __future__ import annotations

import pytest
import torch
from test_ddp import _data, _loss, _model, _train, assert_ranks_equal_single_process, process_group
from torch import nn
from torch.distributed.fsdp import fully_shard

from optprobe.errors import OptprobeError
from optprobe.metrics.curvature import DiagonalGeometry, HessianTrace, Sharpness
from optprobe.probe import Probe, ProbeConfig
from optprobe.sharding import evaluator_for


def _sharded(model: nn.Module) -> nn.Module:
    fully_shard(model[0])
    return fully_shard(model)  # the root keeps the last layer: unsharded after a forward without backward


def _with_batchnorm() -> nn.Module:
    """The test model with running statistics after it (no parameters: x* still fits)."""
    return nn.Sequential(*_model(), nn.BatchNorm1d(1, affine=False).double())


def _state(model: nn.Module) -> list[torch.Tensor]:
    return [p.to_local() for p in model.parameters()] + list(model.buffers())


def _worker(rank: int, world: int, port: int, out_dir: str) -> None:
    with process_group(rank, world, port):
        _train(_sharded(_model()), out_dir, rank, world)
        probed, plain = _sharded(_with_batchnorm()), _sharded(_with_batchnorm())
        _train(probed, None, rank, world)
        _train(plain, None, rank, world, with_probe=False)
        for a, b in zip(_state(probed), _state(plain), strict=True):
            assert torch.equal(a, b)  # the probe changed no bit of training: parameters, running statistics
        _check_refusals(plain, rank)
        _check_point_buffers(plain, rank)


def _check_refusals(model: nn.Module, rank: int) -> None:
    """Clear errors, raised on every rank alike, for what the sharded probe cannot do."""
    with pytest.raises(OptprobeError, match="curvature"):
        Probe(model, _loss, out_dir=None, periodic=[object()])  # type: ignore[list-item]
    with pytest.raises(OptprobeError, match="DiagonalGeometry"):
        Probe(model, _loss, out_dir=None, periodic=[DiagonalGeometry()])
    evaluator = evaluator_for(model, _loss)
    point = {name: p.detach().to_local() for name, p in model.named_parameters()}
    uneven = [(torch.ones(2, 5, dtype=torch.float64), torch.zeros(2, dtype=torch.float64))] * (1 + rank)
    with pytest.raises(OptprobeError, match="same number of batches"):
        evaluator.full_loss_and_grad(point, uneven)
    half_sharded = _model()
    fully_shard(half_sharded[0])
    with pytest.raises(OptprobeError, match="root module"):
        Probe(half_sharded, _loss, out_dir=None)


def _check_point_buffers(model: nn.Module, rank: int) -> None:
    """A pass at a point with its own buffers (x*'s running statistics) uses them; the model keeps its own."""
    evaluator = evaluator_for(model, _loss)
    point = {name: p.detach().to_local() for name, p in model.named_parameters()}
    x, y = _data()
    loader = [(x[rank::2], y[rank::2])]
    own = [b.clone() for b in model.buffers()]
    other = {name: b + 0.5 for name, b in model.named_buffers() if b.is_floating_point()}
    model.eval()
    try:
        base, _, _ = evaluator.full_loss_and_grad(point, loader, with_grad=False)
        with evaluator.buffers_of(other):
            got, _, _ = evaluator.full_loss_and_grad(point, loader, with_grad=False)
        assert all(torch.equal(a, b) for a, b in zip(own, model.buffers(), strict=True))
        with torch.no_grad():  # the same buffers loaded by hand
            for name, buffer in model.named_buffers():
                if name in other:
                    buffer.copy_(other[name])
        want, _, _ = evaluator.full_loss_and_grad(point, loader, with_grad=False)
    finally:
        with torch.no_grad():
            for buffer, value in zip(model.buffers(), own, strict=True):
                buffer.copy_(value)
        model.train()
    assert got.item() == want.item() != base.item()


@pytest.mark.slow
def test_fsdp_metrics_equal_single_process_on_the_global_batch(tmp_path):
    assert_ranks_equal_single_process(tmp_path, _worker)


def _curvature_row(model: nn.Module, rank: int = 0, world: int = 1) -> dict:
    """One probed step with sharpness (λ_max, λ_2, λ_min) and the Hutchinson trace on the step's batch."""
    x, y = _data()
    batch = (x[:16][rank::world], y[:16][rank::world])
    periodic = [
        Sharpness(every=1, k=2, bottom=True, tol=1e-8, max_iter=57),
        HessianTrace(every=1, n_probes=10, seed=3),
    ]
    return _probed_step(model, batch, periodic)


def _probed_step(model: nn.Module, batch, periodic: list, eval_loader=None) -> dict:
    """The row of one probed step on ``batch`` with the ``periodic`` metrics."""
    config = ProbeConfig(metrics=("norms",))
    probe = Probe(model, _loss, config=config, periodic=periodic, eval_loader=eval_loader, out_dir=None)
    probe.begin_step(batch)
    model.zero_grad()
    loss = _loss(model, batch)
    loss.backward()
    return probe.end_step(loss)


CHUNKS = (5, 3, 6, 2)  # F's eval chunks: each rank reads two (FSDP needs the same number per rank)


def _full_curvature_row(model: nn.Module, rank: int = 0, world: int = 1) -> dict:
    """One probed step with sharpness and trace of ∇²F over the eval chunks (each rank reads its own)."""
    x, y = _data()
    starts = [sum(CHUNKS[:i]) for i in range(len(CHUNKS))]
    chunks = [(x[a : a + n], y[a : a + n]) for a, n in zip(starts, CHUNKS, strict=True)]
    batch = (x[:16][rank::world], y[:16][rank::world])
    periodic = [
        Sharpness(every=1, k=2, bottom=True, tol=1e-8, max_iter=57, on="eval"),
        HessianTrace(every=1, n_probes=10, seed=3, on="eval"),
    ]
    return _probed_step(model, batch, periodic, chunks[rank::world])


def _full_curvature_worker(rank: int) -> dict:
    return _full_curvature_row(_sharded(_model()), rank, 2)


@pytest.mark.slow
def test_fsdp_sharpness_and_trace_of_f_equal_single_process_over_every_ranks_chunks(tmp_path):
    """on="eval" under fully_shard: differences of ∇F (every rank's chunks, F's masks) give one process's
    exact λ_max, λ_2, λ_min and trace of ∇²F over all the chunks."""
    from test_ddp_collectives import _spawn

    ranks = _spawn(_full_curvature_worker, tmp_path)
    single = _full_curvature_row(_model())
    for row in ranks:
        for key in ("sharpness", "sharpness_2", "sharpness_min", "hessian_trace", "hessian_trace_se"):
            assert row[key] == pytest.approx(single[key], rel=1e-9), key


def _curvature_worker(rank: int) -> dict:
    model = _sharded(_model())
    row = _curvature_row(model, rank, 2)
    row["unchanged"] = all(torch.equal(p.to_local(), q.to_local()) for p, q in
                           zip(model.parameters(), _sharded(_model()).parameters(), strict=True))  # fmt: skip
    return row


@pytest.mark.slow
def test_fsdp_sharpness_and_trace_equal_single_process_on_the_global_batch(tmp_path):
    """Products by differences of gradients through the sharded model (one rank holds empty shards of the
    last layer): λ_max, λ_2, λ_min and the trace of one process's exact Hessian on the union of the batches,
    to the central difference's O(h²) error; the shifted shards are restored."""
    from test_ddp_collectives import _spawn

    ranks = _spawn(_curvature_worker, tmp_path)
    single = _curvature_row(_model())
    for row in ranks:
        assert row["unchanged"]
        for key in ("sharpness", "sharpness_2", "sharpness_min", "hessian_trace", "hessian_trace_se"):
            assert row[key] == pytest.approx(single[key], rel=1e-9), key  # float64: 1e-11 seen
