"""A 10,000-step soak: the probe keeps no growing state and its log grows linearly."""

from __future__ import annotations

import gc
import sys

import pytest
import torch
from torch import nn

from optprobe.probe import Probe, ProbeConfig


@pytest.mark.slow
def test_ten_thousand_steps_keep_memory_flat_and_log_linear(tmp_path):
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.randn(32, 4), torch.randn(32)
    batch = (x, y)

    def loss_fn(m: nn.Module, b: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return ((m(b[0]).squeeze(-1) - b[1]) ** 2).mean()

    probe = Probe(model, loss_fn, optimizer=opt, out_dir=tmp_path, config=ProbeConfig(per_layer=True))
    log = tmp_path / "metrics.jsonl"
    checkpoints = {2_000: {}, 6_000: {}, 10_000: {}}
    for step in range(1, 10_001):
        probe.begin_step(batch)
        opt.zero_grad()
        loss = loss_fn(model, batch)
        loss.backward()
        probe.end_step(loss)
        opt.step()
        if step in checkpoints:
            gc.collect()
            checkpoints[step] = {
                "blocks": sys.getallocatedblocks(),
                "objects": len(gc.get_objects()),
                "tensors": sum(1 for o in gc.get_objects() if type(o) in (torch.Tensor, nn.Parameter)),
                "log_bytes": log.stat().st_size,
            }
    probe.close()
    early, mid, late = checkpoints[2_000], checkpoints[6_000], checkpoints[10_000]
    assert late["tensors"] == early["tensors"]
    assert late["objects"] - early["objects"] < 200
    assert late["blocks"] - early["blocks"] < 2_000
    # linear log: the second 4,000 steps add as many bytes as the first 4,000 (within 2%)
    first, second = mid["log_bytes"] - early["log_bytes"], late["log_bytes"] - mid["log_bytes"]
    assert abs(second - first) / first < 0.02
    assert len(probe.table()) == 10_000
