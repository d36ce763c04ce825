"""A measured step copies its scalars to the host once, when the row is written (one device sync per row).

Every tensor → Python conversion (``item``, ``tolist``, ``cpu``, ``numpy``, ``float(t)``, ``int(t)``,
``bool(t)``) is counted during one ``end_step``; on a GPU each would wait for the device to finish.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from conftest import mse_loss
from torch import nn

from optprobe.probe import Probe, ProbeConfig

TRANSFERS = ("item", "tolist", "cpu", "numpy", "__float__", "__int__", "__bool__", "__index__")


def _counting(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    for name in TRANSFERS:
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _name=name, _original=original, **kwargs):
            calls.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    return calls


@pytest.mark.parametrize("metrics", [("convexity",), None])
@pytest.mark.parametrize("with_reference", [False, True])
@pytest.mark.parametrize("compiled", [False, True])
def test_a_measured_step_makes_one_host_transfer(metrics, with_reference, compiled, tmp_path, monkeypatch):
    width = 512 if compiled else 6  # compiled kernels reduce tensors of a chunk (2^17 entries) or more

    def build() -> nn.Module:
        return nn.Sequential(nn.Linear(width, 256), nn.Tanh(), nn.Linear(256, 1))

    model, reference = build(), build() if with_reference else None
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    config = ProbeConfig(compile_reductions=compiled)
    config = config if metrics is None else dataclasses.replace(config, metrics=metrics)
    probe = Probe(model, mse_loss, optimizer=opt, config=config, reference=reference, out_dir=tmp_path)
    batch = (torch.randn(16, width), torch.randn(16))

    def step() -> list[str]:
        probe.begin_step(batch)
        opt.zero_grad()
        loss = mse_loss(model, batch)
        loss.backward()
        with monkeypatch.context() as patch:
            calls = _counting(patch)
            probe.end_step(loss)
        opt.step()
        return calls

    step()  # the first step has no x_{t−1}
    step()  # the second compiles the kernels of the passes at x_{t−1} (and x*), if compiled
    calls = step()
    assert probe.rows_written == 3
    assert math.isfinite(probe.last_row["inst_gap_prev"])  # the step was measured at x_{t−1}
    assert len(calls) <= 1, f"{len(calls)} host transfers in one measured step: {calls}"
    assert probe.warnings["compile_failed"] == 0  # with compiled=True the kernels did run
    probe.close()
