"""The Probe in unusual but real set-ups: each either measures right or says what to change."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from conftest import mse_loss
from torch import nn

from optprobe.errors import OptprobeError, ProbeWarning
from optprobe.probe import Probe, ProbeConfig


def _batch(n: int = 16):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(n, 3, generator=g)
    return x, x.sum(1)


def _step(model, probe, opt, batch, loss_fn=mse_loss, scaler=None):
    probe.begin_step(batch)
    opt.zero_grad()
    loss = loss_fn(model, batch)
    (scaler.scale(loss) if scaler else loss).backward()
    row = probe.end_step(loss)
    if scaler:
        scaler.step(opt)
        scaler.update()
    else:
        opt.step()
    return row


def test_grad_scaler_gradients_are_unscaled_before_they_are_measured(tmp_path):
    """A GradScaler leaves .grad multiplied by its scale (1024 here); the metrics must not be."""
    torch.manual_seed(0)
    model, twin = nn.Linear(3, 1), nn.Linear(3, 1)
    twin.load_state_dict(model.state_dict())
    opt, twin_opt = torch.optim.SGD(model.parameters(), lr=0.1), torch.optim.SGD(twin.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    probe = Probe(model, mse_loss, optimizer=opt, grad_scaler=scaler, out_dir=tmp_path / "amp")
    plain = Probe(twin, mse_loss, optimizer=twin_opt, out_dir=tmp_path / "plain")
    for _ in range(3):
        amp_row = _step(model, probe, opt, _batch(), scaler=scaler)
        plain_row = _step(twin, plain, twin_opt, _batch())
        for key in ("grad_norm", "update_corr", "inst_gap_prev", "inst_smooth_prev"):
            if not math.isnan(plain_row[key]):
                assert amp_row[key] == pytest.approx(plain_row[key], rel=1e-5, abs=1e-9), key
    with pytest.raises(OptprobeError, match="grad_scaler needs the optimizer"):
        Probe(model, mse_loss, grad_scaler=scaler, out_dir=None)


def test_accumulation_misuse_closed_probe_and_non_scalar_loss_are_clear_errors(tmp_path):
    model = nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    probe = Probe(model, mse_loss, optimizer=opt, out_dir=tmp_path)
    probe.begin_step(_batch())
    with pytest.raises(OptprobeError, match="once per optimizer step with the list of its micro-batches"):
        probe.begin_step(_batch())
    opt.zero_grad()
    mse_loss(model, _batch()).backward()
    with pytest.raises(OptprobeError, match="scalar training loss"):
        probe.end_step(torch.ones(4))
    probe.close()
    probe.close()  # twice is fine
    with pytest.raises(OptprobeError, match="this Probe is closed"):
        probe.begin_step(_batch())


def test_a_detached_loss_and_complex_or_changing_parameters_are_clear_errors(tmp_path):
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    probe = Probe(model, lambda m, b: mse_loss(m, b).detach(), optimizer=opt, out_dir=None, sinks=[])
    probe.begin_step(_batch())
    opt.zero_grad()
    mse_loss(model, _batch()).backward()
    probe.end_step(None)  # step 0: no x_(t-1) yet
    opt.step()
    with pytest.raises(OptprobeError, match="does not depend on the parameters through autograd"):
        _step(model, probe, opt, _batch())
    with pytest.raises(OptprobeError, match="complex parameters"):
        Probe(nn.Linear(3, 1, dtype=torch.complex64), mse_loss, out_dir=None, sinks=[])
    probe = Probe(model, mse_loss, optimizer=opt, out_dir=None, sinks=[])
    _step(model, probe, opt, _batch())
    model[0].requires_grad_(False)  # gradual unfreezing / freezing after the Probe was built
    with pytest.raises(OptprobeError, match="requires_grad changed"):
        _step(model, probe, opt, _batch())


def test_all_zero_gradient_is_flagged(tmp_path):
    model = nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    probe = Probe(model, mse_loss, optimizer=opt, out_dir=None, sinks=[])
    probe.begin_step(_batch())
    loss = mse_loss(model, _batch())
    loss.backward()
    opt.zero_grad(set_to_none=False)  # the gradient is wiped before the Probe reads it
    with pytest.warns(ProbeWarning, match="every gradient entry is 0"):
        probe.end_step(loss)
    assert probe.warnings["zero_gradient"] == 1


def test_resuming_into_a_probe_with_another_config_is_refused(tmp_path):
    model = nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    probe = Probe(model, mse_loss, optimizer=opt, out_dir=None, sinks=[],
                  config=ProbeConfig(metrics=("convexity", "smoothness")))  # fmt: skip
    _step(model, probe, opt, _batch())
    state = probe.state_dict()
    other = Probe(model, mse_loss, optimizer=opt, out_dir=None, sinks=[],
                  config=ProbeConfig(metrics=("smoothness", "convexity")))  # fmt: skip
    with pytest.raises(OptprobeError, match="another config"):
        other.load_state_dict(state)


def test_a_checkpoint_from_before_a_new_setting_or_with_compile_reductions_switched_loads(tmp_path):
    """A setting newer than the checkpoint (absent from its config) is no change, nor is switching one that
    only changes how the columns are computed (compile_reductions); another metric set still is."""
    model = nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    probe = Probe(model, mse_loss, optimizer=opt, out_dir=None, sinks=[])
    _step(model, probe, opt, _batch())
    state = probe.state_dict()
    older = {**state, "config": {k: v for k, v in state["config"].items() if k != "replay_rng"}}
    for saved, config in ((older, ProbeConfig()), (state, ProbeConfig(compile_reductions=True))):
        resumed = Probe(model, mse_loss, optimizer=opt, out_dir=None, sinks=[], config=config)
        resumed.load_state_dict(saved)
        assert resumed.step == 1
    changed = {**older, "config": {**older["config"], "every": 2}}
    with pytest.raises(OptprobeError, match="another config"):
        Probe(model, mse_loss, optimizer=opt, out_dir=None, sinks=[]).load_state_dict(changed)


def test_config_accepts_one_family_or_beta_and_rejects_fractional_counts():
    assert ProbeConfig(metrics="convexity").metrics == ("convexity",)
    assert ProbeConfig(betas=0.9).betas == (0.9,)
    assert ProbeConfig(every=np.int64(5)).every == 5  # numpy integers (np.arange grids) are integers
    with pytest.raises(OptprobeError, match="every must be an integer"):
        ProbeConfig(every=2.5)


@pytest.mark.parametrize("wrap", ["data_parallel", "compile"])
def test_wrapped_models_are_measured_as_the_plain_module(wrap, tmp_path):
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
    reference = {k: v + 0.1 for k, v in model.state_dict().items()}  # saved from the plain model
    wrapped = nn.DataParallel(model) if wrap == "data_parallel" else torch.compile(model, backend="eager")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # DataParallel on a CPU-only machine says so
        probe = Probe(wrapped, mse_loss, reference=reference, out_dir=None, sinks=[])
    assert probe.names == ["0.weight", "0.bias", "2.weight", "2.bias"]


def test_batch_device_check_looks_at_every_tensor():
    """meta tensors stand in for a GPU here: a batch wholly elsewhere is refused, a mixed one is not."""
    model = nn.Linear(3, 1)
    probe = Probe(model, mse_loss, out_dir=None, sinks=[])
    with pytest.raises(OptprobeError, match="move the batch"):
        probe.begin_step({"x": torch.empty(4, 3, device="meta"), "y": torch.empty(4, device="meta")})
    probe.begin_step({"lengths": torch.empty(4, device="meta"), "x": torch.randn(4, 3)})


@pytest.mark.parametrize("saved_by", ["this version", "an older version"])
def test_resuming_into_a_model_with_other_parameter_shapes_is_refused(saved_by):
    """Same names, other shapes: the first mismatching parameter and both shapes, in one line."""
    model = nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    probe = Probe(model, mse_loss, optimizer=opt, out_dir=None, sinks=[])
    _step(model, probe, opt, _batch())
    _step(model, probe, opt, _batch())
    state = probe.state_dict()
    if saved_by == "an older version":
        del state["shapes"]  # then the saved x_{t−1} says what the shapes were
    other = Probe(nn.Linear(3, 2), mse_loss, out_dir=None, sinks=[])
    with pytest.raises(OptprobeError, match=r"^[^\n]*'weight'[^\n]*\(1, 3\)[^\n]*\(2, 3\)[^\n]*$"):
        other.load_state_dict(state)
    assert other.step == 0  # refused before anything was restored
    same = Probe(nn.Linear(3, 1), mse_loss, out_dir=None, sinks=[])
    same.load_state_dict(state)
    assert same.step == probe.step
