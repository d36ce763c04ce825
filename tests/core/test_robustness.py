"""Degenerate steps, misuse, references, schedules and resume."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import mse_loss, quadratic_loss, train
from torch import nn

from optprobe.errors import OptprobeError, ProbeWarning
from optprobe.probe import Probe, ProbeConfig
from optprobe.sinks import read_table


def _data(n: int = 64, d: int = 3):
    g = torch.Generator().manual_seed(11)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    return x, x @ torch.randn(d, generator=g, dtype=torch.float64)


def _batches(n: int = 8):
    x, y = _data()
    return [(x[i : i + 8], y[i : i + 8]) for i in range(0, 8 * n, 8)]


def test_zero_update_records_nan_smoothness_and_counts_a_warning(tmp_path):
    model = nn.Linear(3, 1).double()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    probe = Probe(model, mse_loss, optimizer=opt, out_dir=tmp_path)
    with pytest.warns(ProbeWarning, match="x_t = x_"):
        train(model, mse_loss, _batches(), opt, probe)
    t = probe.table()
    assert t["inst_smooth_prev"].isna().all()
    assert (t["inst_gap_prev"].iloc[1:] == 0).all()  # gaps stay defined and exact
    assert probe.warnings["zero_update"] == 7
    assert json.loads((tmp_path / "run.json").read_text())["warnings"]["zero_update"] == 7


@pytest.mark.parametrize("families", [("norms",), ("convexity", "correlation")])
def test_zero_update_is_no_warning_when_no_metric_depends_on_its_direction(tmp_path, families):
    model = nn.Linear(3, 1).double()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    probe = Probe(model, mse_loss, optimizer=opt, out_dir=tmp_path, config=ProbeConfig(metrics=families))
    with warnings.catch_warnings():
        warnings.simplefilter("error", ProbeWarning)
        train(model, mse_loss, _batches(), opt, probe)
    assert probe.warnings["zero_update"] == 0


def test_non_finite_loss_is_recorded_as_nan_without_crashing(tmp_path):
    model = nn.Linear(3, 1).double()
    batches = _batches()
    x, y = batches[3]
    batches[3] = (x, torch.full_like(y, math.inf))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    probe = Probe(model, mse_loss, optimizer=opt, out_dir=tmp_path)
    with pytest.warns(ProbeWarning):
        for batch in batches[:4]:
            probe.begin_step(batch)
            opt.zero_grad()
            loss = mse_loss(model, batch)
            loss.backward()
            probe.end_step(loss)
            if torch.isfinite(loss):
                opt.step()
    probe.close()
    row = probe.table().iloc[3]
    assert math.isnan(row["loss"]) and math.isnan(row["inst_gap_prev"]) and math.isnan(row["update_corr"])
    assert probe.warnings["non_finite_loss"] == 1


def test_zero_loss_batch_is_fine(tmp_path):
    model = nn.Linear(3, 1, bias=False).double()
    x, _ = _data()
    batch = (x[:8], torch.zeros(8, dtype=torch.float64))
    with torch.no_grad():
        model.weight.zero_()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    probe = Probe(model, mse_loss, optimizer=opt, out_dir=tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ProbeWarning)
        train(model, mse_loss, [batch] * 3, opt, probe)
    t = probe.table()
    assert (t["loss"] == 0).all() and (t["grad_norm"] == 0).all()


def test_misuse_errors_say_what_to_change(tmp_path):
    model = nn.Linear(3, 1).double()
    probe = Probe(model, mse_loss, out_dir=tmp_path)
    with pytest.raises(OptprobeError, match="begin_step"):
        probe.end_step(0.0)
    probe.begin_step(_batches()[0])
    with pytest.raises(OptprobeError, match="after loss.backward"):
        probe.end_step(0.0)
    with pytest.raises(OptprobeError, match="did you mean 'smoothness'"):
        ProbeConfig(metrics=("smoothnes",))
    with pytest.raises(OptprobeError, match="already holds an optprobe run"):
        train(model, mse_loss, _batches(2), torch.optim.SGD(model.parameters(), lr=0.1), probe)
        Probe(model, mse_loss, out_dir=tmp_path)
    frozen = nn.Linear(3, 1).requires_grad_(False)
    with pytest.raises(OptprobeError, match="requires_grad"):
        Probe(frozen, mse_loss, out_dir=None)


def test_reference_mismatch_names_the_offending_parameters(tmp_path):
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 1))
    with pytest.raises(OptprobeError, match=r"1\.weight: model \(1, 4\) vs reference \(2, 4\)"):
        Probe(model, mse_loss, reference=nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2)), out_dir=None)
    with pytest.raises(OptprobeError, match="missing from the reference: 0.weight, 0.bias"):
        Probe(model, mse_loss, reference={"1.weight": torch.zeros(1, 4)}, out_dir=None)
    with pytest.raises(OptprobeError, match="does not exist"):
        Probe(model, mse_loss, reference=tmp_path / "nope.pt", out_dir=None)


def test_reference_from_a_ddp_checkpoint_file(tmp_path):
    model = nn.Linear(3, 1).double()
    ref = nn.Linear(3, 1).double()
    torch.save(
        {"model": {f"module.{k}": v for k, v in ref.state_dict().items()}, "epoch": 3}, tmp_path / "x.pt"
    )
    probe = Probe(model, mse_loss, reference=tmp_path / "x.pt", out_dir=None)
    assert torch.equal(probe.reference["weight"], ref.weight.detach())


def test_every_k_measures_only_those_steps_against_the_step_before(spd_quadratic, tmp_path):
    model = spd_quadratic
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    xs = [model.x.detach().clone()]
    for _ in range(12):
        xs.append(xs[-1] - 0.05 * (model.a @ xs[-1] + model.b))
    probe = Probe(model, quadratic_loss, optimizer=opt, out_dir=tmp_path, config=ProbeConfig(every=5))
    train(model, quadratic_loss, [None] * 12, opt, probe)
    t = probe.table().set_index("step")
    assert list(t.index) == [0, 5, 10]
    delta = xs[10] - xs[9]
    assert t.loc[10, "inst_gap_prev"] == pytest.approx(float(-0.5 * delta @ model.a @ delta), rel=1e-9)
    # the cumulative sum adds the measured steps only: ⟨g_5, x_5 − x_4⟩ + ⟨g_10, x_10 − x_9⟩, not steps 1–9
    measured = sum(float((model.a @ xs[s] + model.b) @ (xs[s] - xs[s - 1])) for s in (5, 10))
    every_step = sum(float((model.a @ xs[s] + model.b) @ (xs[s] - xs[s - 1])) for s in range(1, 11))
    assert t.loc[10, "cum_update_corr"] == pytest.approx(measured, rel=1e-9)
    assert abs(measured - every_step) > 1e-3 * abs(every_step)


def test_random_scaling_correlation_divides_by_the_scale(spd_quadratic, tmp_path):
    class Scaled(torch.optim.SGD):
        last_scale, last_weight = 2.5, 0.75

    model = spd_quadratic
    opt = Scaled(model.parameters(), lr=0.05)
    probe = Probe(model, quadratic_loss, optimizer=opt, out_dir=tmp_path)
    train(model, quadratic_loss, [None] * 4, opt, probe)
    t = probe.table().iloc[1:]
    np.testing.assert_allclose(t["update_corr_rs"], t["update_corr"] * 0.75 / 2.5, rtol=1e-14)
    assert (t["scale"] == 2.5).all()


def test_without_random_scaling_there_is_no_scale_column(spd_quadratic, tmp_path):
    """s_t exists only under random scaling: a constant 1.0 would be a made-up value in every tracker."""
    model = spd_quadratic
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    probe = Probe(model, quadratic_loss, optimizer=opt, out_dir=tmp_path)
    train(model, quadratic_loss, [None] * 4, opt, probe)
    table = probe.table()
    assert "scale" not in table.columns and "lr" in table.columns


class _Delegating(torch.optim.Optimizer):
    """Accelerate's AcceleratedOptimizer in miniature: ``.optimizer`` inside, param_groups delegated."""

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer

    param_groups = property(lambda self: self.optimizer.param_groups)
    state = property(lambda self: self.optimizer.state)

    def step(self, closure=None):
        return self.optimizer.step(closure)

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none)


def test_random_scaling_behind_a_delegating_wrapper_is_read_through_it(spd_quadratic, tmp_path):
    """A Trainer wraps the optimizer (accelerate): the scale must still be s_t, not a default 1."""
    from optprobe.optim import RandomScaling

    model = spd_quadratic
    rs = RandomScaling(torch.optim.SGD(model.parameters(), lr=0.05), seed=4)
    opt = _Delegating(rs)
    probe = Probe(model, quadratic_loss, optimizer=opt, out_dir=tmp_path)
    scales = []
    for _ in range(4):
        probe.begin_step(None)
        opt.zero_grad()
        loss = quadratic_loss(model, None)
        loss.backward()
        probe.end_step(loss)
        opt.step()
        scales.append(rs.last_scale)
    t = probe.table().query("event == 'step'")
    np.testing.assert_array_equal(t["scale"].iloc[1:], scales[:-1])  # row t: the s of the step to x_t
    assert all(s != 1.0 for s in scales)
    np.testing.assert_allclose(t["update_corr_rs"].iloc[1:], t["update_corr"].iloc[1:] / t["scale"].iloc[1:],
                               rtol=1e-14)  # fmt: skip


def test_per_layer_columns_add_up_to_the_global_values(tmp_path):
    model = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 1)).double()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    probe = Probe(model, mse_loss, optimizer=opt, out_dir=tmp_path, config=ProbeConfig(per_layer=True))
    train(model, mse_loss, _batches(), opt, probe)
    t = probe.table().iloc[1:]
    np.testing.assert_allclose(t["update_corr/0"] + t["update_corr/2"], t["update_corr"], rtol=1e-12)
    np.testing.assert_allclose(np.hypot(t["grad_norm/0"], t["grad_norm/2"]), t["grad_norm"], rtol=1e-12)
    assert t["inst_smooth_prev/0"].notna().all()


def test_gaps_only_config_computes_no_gradient_at_the_previous_point(tmp_path, monkeypatch):
    model = nn.Linear(3, 1).double()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    probe = Probe(
        model, mse_loss, optimizer=opt, out_dir=tmp_path, config=ProbeConfig(metrics=("convexity",))
    )
    calls = []
    monkeypatch.setattr(probe.evaluator, "stream_grad", lambda *a, **k: calls.append(a))
    train(model, mse_loss, _batches(), opt, probe)
    assert not calls and probe.table()["inst_gap_prev"].iloc[1:].notna().all()
    assert "inst_smooth_prev" not in probe.table()


def _run(tmp_path, stop_at=None, state=None, betas=(0.9,)):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 6), nn.Dropout(0.2), nn.Linear(6, 1)).double()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    batches = _batches()
    x, y = _data()
    probe = Probe(
        model,
        mse_loss,
        optimizer=opt,
        eval_loader=[(x, y)],
        out_dir=tmp_path,
        if_exists="resume" if state else "error",
        config=ProbeConfig(betas=betas, full_batch_every=3),
    )
    start = 0
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        probe.load_state_dict(state["probe"])
        torch.set_rng_state(state["rng"])
        start = state["epoch"]
    for epoch in range(start, 3):
        if epoch == stop_at:
            return {
                "model": model.state_dict(),
                "opt": opt.state_dict(),
                "probe": probe.state_dict(),
                "rng": torch.get_rng_state(),
                "epoch": epoch,
            }
        for batch in batches:
            probe.begin_step(batch)
            opt.zero_grad()
            loss = mse_loss(model, batch)
            loss.backward()
            probe.end_step(loss)
            opt.step()
        probe.end_epoch()
    probe.close()
    return None


def test_resume_from_state_dict_continues_with_identical_metric_values(tmp_path):
    _run(tmp_path / "full")
    state = _run(tmp_path / "cut", stop_at=2)
    # the killed run also wrote rows after its checkpoint: resuming must drop them
    with (tmp_path / "cut" / "metrics.jsonl").open("a") as f:
        f.write('{"step": 99, "loss": 1.0}\n{"step": 100, "lo')
    _run(tmp_path / "cut", state=state)
    full, resumed = read_table(tmp_path / "full"), read_table(tmp_path / "cut")
    pd.testing.assert_frame_equal(full, resumed)
    assert (tmp_path / "cut" / "metrics.parquet").exists()


def test_reader_ignores_a_half_written_last_row(tmp_path):
    (tmp_path / "metrics.jsonl").write_text(
        '{"step": 0, "loss": 1.5}\n{"step": 1, "loss": NaN}\n{"step": 2, "lo'
    )
    t = read_table(tmp_path)
    assert list(t["step"]) == [0, 1] and math.isnan(t["loss"].iloc[1])
