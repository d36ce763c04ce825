"""The tables of points and vectors: unknown names fail at construction, snapshots follow the table."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch
from conftest import mse_loss
from torch import nn

from optprobe.errors import OptprobeError
from optprobe.metrics import Needs, StepData, TrajectoryMetric
from optprobe.probe import Probe, ProbeConfig
from optprobe.reductions import POINTS, VECTORS


class _Reads(TrajectoryMetric):
    """Reports the needed inner products as columns ``dot:<a>,<b>``."""

    def __init__(self, needs: Needs) -> None:
        self.needs = needs

    def update(self, data: StepData) -> dict[str, float]:
        return {f"dot:{a},{b}": data.dot(a, b) for a, b in sorted(self.needs.dots)}


def _batches(n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return [(x := torch.randn(8, 3, generator=g, dtype=torch.float64), x.sum(1)) for _ in range(n)]


def _run(probe: Probe, model: nn.Module, opt: torch.optim.Optimizer, batches) -> list[dict]:
    rows = []
    for batch in batches:
        probe.begin_step(batch)
        opt.zero_grad()
        loss = mse_loss(model, batch)
        loss.backward()
        rows.append(probe.end_step(loss))
        opt.step()
    return rows


def test_an_unknown_vector_or_point_is_refused_at_construction_with_the_known_ones():
    model = nn.Linear(3, 1)
    known = r"_Reads names unknown vector\(s\) 'dx_start'; known vectors: g .*dx_init \(x_t − x_0\)"
    with pytest.raises(OptprobeError, match=known):
        Probe(model, mse_loss, out_dir=None, metrics=[_Reads(Needs(dots=frozenset({("g", "dx_start")})))])
    with pytest.raises(OptprobeError, match=r"unknown point\(s\) 'start'.*init \(x_0\)"):
        Probe(model, mse_loss, out_dir=None, metrics=[_Reads(Needs(losses=frozenset({"start"})))])
    with pytest.raises(OptprobeError, match="gradients at two points"):
        Probe(model, mse_loss, out_dir=None, metrics=[_Reads(Needs(dots=frozenset({("dg_prev", "dg_ref")})))])


def test_every_vector_is_built_from_known_sources():
    for name, vector in VECTORS.items():
        assert set(vector.points) <= set(POINTS), name
        assert 1 <= len(vector.sources) <= 2, name


def test_lagged_points_match_the_iterates_with_every_k():
    """⟨Δ_t, Δ_{t−1}⟩ and ⟨x_t − x_0, x_t − x_0⟩ against the iterates, measuring every 3rd step."""
    torch.manual_seed(0)
    model = nn.Linear(3, 1).double()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.5)
    pairs = frozenset({("dx_prev", "prev_dx"), ("dx_init", "dx_init")})
    probe = Probe(model, mse_loss, optimizer=opt, out_dir=None, metrics=[_Reads(Needs(dots=pairs))],
                  config=ProbeConfig(every=3))  # fmt: skip
    iterates = []
    for batch in _batches(10):
        iterates.append(torch.cat([p.detach().reshape(-1).clone() for p in model.parameters()]))
        row = _run(probe, model, opt, [batch])[0]
        t = len(iterates) - 1
        assert (row is None) == (t % 3 != 0)
        if row is None:
            continue
        assert row["dot:dx_init,dx_init"] == pytest.approx(float((iterates[t] - iterates[0]).square().sum()))
        if t < 2:
            assert math.isnan(row["dot:dx_prev,prev_dx"])
        else:
            expected = (iterates[t] - iterates[t - 1]) @ (iterates[t - 1] - iterates[t - 2])
            assert row["dot:dx_prev,prev_dx"] == pytest.approx(float(expected), rel=1e-10)
    assert probe._snapshots.history == []  # steps 10 and 11 are not measured: no copy of x_9 is held
    _run(probe, model, opt, _batches(1))
    assert [s for s, _ in probe._snapshots.history] == [10]  # step 12 reads x_10 (and x_11, copied next)


def test_a_checkpoint_that_saved_x_prev_as_prev_still_resumes_identically():
    torch.manual_seed(0)
    model = nn.Linear(3, 1).double()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    batches = _batches(4)
    probe = Probe(model, mse_loss, optimizer=opt, out_dir=None, sinks=[])
    _run(probe, model, opt, batches[:2])
    state = probe.state_dict()
    model_state, opt_state = {k: v.clone() for k, v in model.state_dict().items()}, opt.state_dict()
    expected = _run(probe, model, opt, batches[2:])
    old = {k: v for k, v in state.items() if k != "snapshots"}
    old["prev"] = state["snapshots"]["history"][0][1]  # the format before the table of points
    model.load_state_dict(model_state)
    opt.load_state_dict(opt_state)
    resumed = Probe(model, mse_loss, optimizer=opt, out_dir=None, sinks=[])
    resumed.load_state_dict(old)
    assert _run(resumed, model, opt, batches[2:]) == expected


def test_a_resumed_probe_never_takes_x0_from_the_resume_point():
    model = nn.Linear(3, 1).double()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    needs = Needs(dots=frozenset({("dx_init", "dx_init")}))
    probe = Probe(model, mse_loss, optimizer=opt, out_dir=None, metrics=[_Reads(needs)])
    _run(probe, model, opt, _batches(2))
    state = probe.state_dict()
    del state["snapshots"]["first"]  # a checkpoint without x_0
    resumed = Probe(model, mse_loss, optimizer=opt, out_dir=None, metrics=[_Reads(needs)])
    resumed.load_state_dict(state)
    assert math.isnan(_run(resumed, model, opt, _batches(1))[0]["dot:dx_init,dx_init"])


def test_the_reduction_layer_imports_nothing_from_metrics():
    code = "import sys, optprobe.reductions; print([m for m in sys.modules if m.startswith('optprobe.')])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "optprobe.metrics" not in out and "optprobe.reductions" in out
