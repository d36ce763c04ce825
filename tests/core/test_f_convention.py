"""F is one function of x: the same dropout-mask stream and BatchNorm convention at x_t and at x*.

The model has Dropout and BatchNorm and the evaluation set comes in chunks of unequal size, the
setting where F(x_t) and F(x*) once drew different masks (issue 14, items 1 and 2).
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from conftest import mse_loss
from torch import nn

from optprobe.errors import ProbeWarning
from optprobe.evaluation import Evaluator, chunk_seed
from optprobe.probe import Probe, ProbeConfig

SIZES = (50, 50, 50, 28)


def _data():
    g = torch.Generator().manual_seed(21)
    x = torch.randn(sum(SIZES), 5, generator=g, dtype=torch.float64)
    y = x @ torch.randn(5, generator=g, dtype=torch.float64) + 0.3 * torch.randn(
        sum(SIZES), generator=g, dtype=torch.float64
    )
    return x, y


def _chunks(x, y):
    bounds = torch.tensor((0, *SIZES)).cumsum(0).tolist()
    return [(x[a:b], y[a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def _net() -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(
        nn.Linear(5, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 1)
    ).double()


def _f_eval(model: nn.Module, chunks) -> float:
    """F in eval mode, recomputed directly: the example-weighted mean of the chunks' eval-mode losses."""
    model = copy.deepcopy(model).eval()
    with torch.no_grad():
        total = sum(mse_loss(model, c).item() * len(c[0]) for c in chunks)
    return total / sum(len(c[0]) for c in chunks)


def _sgd_steps(model: nn.Module, batches) -> None:
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for batch in batches:
        opt.zero_grad()
        mse_loss(model, batch).backward()
        opt.step()


def _probed_steps(probe: Probe, opt: torch.optim.Optimizer, model: nn.Module, x, y, batch: int = 32) -> None:
    """The README's loop over (x, y) in batches of ``batch``, with the probe's two calls."""
    for i in range(0, len(x), batch):
        z = (x[i : i + batch], y[i : i + batch])
        probe.begin_step(z)
        opt.zero_grad()
        loss = mse_loss(model, z)
        loss.backward()
        probe.end_step(loss)
        opt.step()


def test_full_batch_loss_is_the_same_with_and_without_its_gradient():
    """The loss+gradient pass and the loss-only pass (the one F(x*) takes) draw the same masks."""
    model = _net()
    chunks = _chunks(*_data())
    params = {n: p.detach() for n, p in model.named_parameters()}
    evaluator = Evaluator(model, mse_loss)
    with_grad, _, n = evaluator.full_loss_and_grad(params, chunks, seed=5)
    loss_only, _, _ = evaluator.full_loss_and_grad(params, chunks, seed=5, with_grad=False)
    assert n == sum(SIZES)
    assert with_grad.item() == loss_only.item()
    again, _, _ = evaluator.full_loss_and_grad(params, chunks, seed=5)
    assert again.item() == with_grad.item()  # restarted identically at every pass
    by_hand = 0.0  # the documented stream: chunk c draws its masks after torch.manual_seed(chunk_seed(5, c))
    for index, chunk in enumerate(chunks):
        torch.manual_seed(chunk_seed(5, index))
        with torch.no_grad():
            by_hand += mse_loss(model, chunk).item() * len(chunk[0])
    assert with_grad.item() == pytest.approx(by_hand / sum(SIZES), rel=1e-14)


def test_f_at_the_reference_equals_f_at_x_t_when_they_are_the_same_point(tmp_path):
    """x* = x_t: F(x_t) − F(x*) is exactly 0, in train mode (batch statistics, dropout) and eval mode."""
    chunks = _chunks(*_data())
    for eval_mode in (False, True):
        model = _net()
        config = ProbeConfig(eval_mode=eval_mode)
        probe = Probe(model, mse_loss, reference=copy.deepcopy(model), eval_loader=chunks,
                      out_dir=tmp_path / f"eval{eval_mode}", config=config)  # fmt: skip
        row = probe.end_epoch()  # at x_0, whose buffers are the reference's
        probe.close()
        assert row is not None and math.isfinite(row["full_loss"])
        assert row["full_loss"] == row["ref_full_loss"], f"eval_mode={eval_mode}"


def test_train_step_at_the_reference_has_zero_gaps(tmp_path):
    """Step 0 with x* = x_0 in train mode: the full-batch gap and the trajectory gap are both exactly 0."""
    x, y = _data()
    chunks = _chunks(x, y)
    model = _net()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    probe = Probe(model, mse_loss, optimizer=opt, reference=copy.deepcopy(model), eval_loader=chunks,
                  out_dir=tmp_path, config=ProbeConfig(full_batch_every=1))  # fmt: skip
    batch = (x[:32], y[:32])
    probe.begin_step(batch)
    opt.zero_grad()
    loss = mse_loss(model, batch)
    loss.backward()
    row = probe.end_step(loss)
    probe.close()
    assert row is not None
    assert row["full_loss"] == row["ref_full_loss"]
    assert row["inst_gap_ref"] == 0.0


def test_eval_mode_f_at_the_reference_uses_the_references_own_buffers(tmp_path):
    """F(x*) in eval mode uses x*'s running statistics, not the model's at the first measurement."""
    x, y = _data()
    chunks = _chunks(x, y)
    model = _net()
    _sgd_steps(model, [(x[i : i + 32], y[i : i + 32]) for i in range(0, 96, 32)])
    reference = copy.deepcopy(model)
    _sgd_steps(reference, [(x[i : i + 32], y[i : i + 32]) for i in range(96, 160, 32)])
    with torch.no_grad():  # statistics that differ clearly from the model's
        reference[1].running_mean.add_(0.5)
        reference[1].running_var.mul_(2.0)
    want_ref = _f_eval(reference, chunks)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    probe = Probe(model, mse_loss, optimizer=opt, reference=reference, eval_loader=chunks, out_dir=tmp_path,
                  config=ProbeConfig(eval_mode=True, full_batch_every=1, metrics=("norms",)))  # fmt: skip
    want_full = []
    for i in range(0, 96, 32):
        batch = (x[i : i + 32], y[i : i + 32])
        probe.begin_step(batch)
        opt.zero_grad()
        loss = mse_loss(model, batch)
        loss.backward()
        probe.end_step(loss)
        want_full.append(_f_eval(model, chunks))  # x_t with the buffers the model has now
        opt.step()
    probe.close()
    table = probe.table()
    assert table["ref_full_loss"].tolist() == pytest.approx([want_ref] * 3, rel=1e-12)
    assert table["full_loss"].tolist() == pytest.approx(want_full, rel=1e-12)


def test_a_reference_without_buffers_warns_and_says_which_buffers_it_uses(tmp_path):
    """A parameters-only x* in eval mode: a counted warning; F(x*) uses the model's buffers at build time."""
    x, y = _data()
    chunks = _chunks(x, y)
    model = _net()
    _sgd_steps(model, [(x[i : i + 32], y[i : i + 32]) for i in range(0, 96, 32)])
    other = copy.deepcopy(model)
    _sgd_steps(other, [(x[i : i + 32], y[i : i + 32]) for i in range(96, 160, 32)])
    at_build = copy.deepcopy(model)
    at_build.load_state_dict(dict(other.named_parameters()), strict=False)  # x*'s parameters, x_0's buffers
    want_ref = _f_eval(at_build, chunks)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    with pytest.warns(ProbeWarning, match="buffers"):
        probe = Probe(model, mse_loss, optimizer=opt, reference=dict(other.named_parameters()),
                      eval_loader=chunks, out_dir=tmp_path,
                      config=ProbeConfig(eval_mode=True, full_batch_every=1, metrics=("norms",)))  # fmt: skip
    assert probe.warnings["reference_without_buffers"] == 1
    _probed_steps(probe, opt, model, x[:96], y[:96])
    probe.close()
    assert probe.table()["ref_full_loss"].tolist() == pytest.approx([want_ref] * 3, rel=1e-12)


def test_nan_in_the_evaluation_data_is_a_counted_warning(tmp_path):
    x, y = _data()
    chunks = _chunks(x, y)
    chunks[2] = (chunks[2][0].clone(), chunks[2][1].clone())
    chunks[2][0][3, 1] = float("nan")
    model = _net()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    probe = Probe(model, mse_loss, optimizer=opt, eval_loader=chunks, out_dir=tmp_path,
                  config=ProbeConfig(full_batch_every=1, metrics=("norms",)))  # fmt: skip
    with pytest.warns(ProbeWarning, match="full-batch loss"):
        _probed_steps(probe, opt, model, x[:64], y[:64])
    probe.close()
    assert probe.table()["full_loss"].isna().all()
    assert probe.warnings["non_finite_full_loss"] == 2
