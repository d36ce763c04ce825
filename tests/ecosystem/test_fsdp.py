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
from optprobe.probe import Probe
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
