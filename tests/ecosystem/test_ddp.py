"""DDP on CPU (gloo, 2 processes): every metric equals a single process on the union of the ranks' batches."""

from __future__ import annotations

import contextlib
import datetime
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from optprobe.probe import Probe, ProbeConfig
from optprobe.sinks import read_table

STEPS, GLOBAL_BATCH = 6, 16


def _data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(STEPS * GLOBAL_BATCH, 5, generator=g, dtype=torch.float64)
    return x, torch.sin(x.sum(1)) + 0.1 * torch.randn(len(x), generator=g, dtype=torch.float64)


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 1)).double()


def _loss(model: nn.Module, batch) -> torch.Tensor:
    return ((model(batch[0]).squeeze(-1) - batch[1]) ** 2).mean()


def _train(model, out_dir, rank=0, world=1, with_probe=True):
    x, y = _data()
    reference = _model()
    with torch.no_grad():
        for p in reference.parameters():
            p.add_(0.3)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    shard = slice(rank, None, world)  # each rank: every world-th example of the global batch / eval set
    config = ProbeConfig(full_batch_every=2, per_layer=True)
    probe = Probe(model, _loss, optimizer=opt, reference=reference, out_dir=out_dir,
                  eval_loader=[(x[shard], y[shard])], config=config) if with_probe else None  # fmt: skip
    for t in range(STEPS):
        xb, yb = x[t * GLOBAL_BATCH : (t + 1) * GLOBAL_BATCH], y[t * GLOBAL_BATCH : (t + 1) * GLOBAL_BATCH]
        batch = (xb[shard], yb[shard])
        if probe:
            probe.begin_step(batch)
        opt.zero_grad()
        loss = _loss(model, batch)
        loss.backward()
        if probe:
            probe.end_step(loss)
        opt.step()
    if probe:
        probe.end_epoch()
        probe.close()


@contextlib.contextmanager
def process_group(rank: int, world: int, port: int, timeout: float | None = None) -> Iterator[None]:
    """A gloo process group on this machine for the block; ``timeout`` (s) makes a stuck collective fail."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    limit = {} if timeout is None else {"timeout": datetime.timedelta(seconds=timeout)}
    dist.init_process_group("gloo", rank=rank, world_size=world, **limit)
    try:
        yield
        dist.barrier()  # every rank is done before any tears the group down (gloo aborts a rank otherwise)
    finally:
        dist.destroy_process_group()


def _worker(rank: int, world: int, port: int, out_dir: str) -> None:
    with process_group(rank, world, port):
        _train(nn.parallel.DistributedDataParallel(_model()), out_dir, rank, world)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def assert_ranks_equal_single_process(tmp_path: Path, worker: Callable[[int, int, int, str], None]) -> None:
    """``worker(rank, world, port, out_dir)`` on 2 ranks writes what 1 process does on the global batch."""
    _train(_model(), tmp_path / "single")
    mp.spawn(worker, args=(2, _free_port(), str(tmp_path / "ranks")), nprocs=2, join=True)
    single, ranks = read_table(tmp_path / "single"), read_table(tmp_path / "ranks")
    assert len(single) == STEPS + 1
    pd.testing.assert_frame_equal(single, ranks, check_exact=False, rtol=1e-9, atol=1e-12)
    assert not list(tmp_path.glob("ranks/*rank*"))  # rank 1 wrote nothing


@pytest.mark.slow
def test_ddp_metrics_equal_single_process_on_the_global_batch(tmp_path):
    assert_ranks_equal_single_process(tmp_path, _worker)
