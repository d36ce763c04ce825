"""Secant smoothness of F (Zhang et al.'s (L0, L1) estimator) against the closed form on a quadratic."""

from __future__ import annotations

import math
from collections import Counter

import pandas as pd
import pytest
import torch
from conftest import mse_loss, quadratic_loss
from torch import nn

from optprobe.errors import OptprobeError
from optprobe.evaluation import Evaluator
from optprobe.metrics.full_smoothness import FullSmoothness
from optprobe.probe import Probe, ProbeConfig


def test_secant_smoothness_and_gradient_norm_match_the_quadratic(spd_quadratic, tmp_path):
    """f = ½xᵀAx + bᵀx: full_smooth = ‖A(x_t − x_s)‖/‖x_t − x_s‖, full_smooth_grad_norm = ‖Ax_s + b‖."""
    model, a, b = spd_quadratic, spd_quadratic.a, spd_quadratic.b
    opt = torch.optim.SGD(model.parameters(), lr=0.02)
    batches = [torch.zeros(1)] * 9  # the quadratic ignores its batch
    probe = Probe(model, quadratic_loss, optimizer=opt, out_dir=tmp_path, metrics=["norms"],
                  periodic=[FullSmoothness(every=3)], eval_loader=[torch.zeros(1)] * 2)  # fmt: skip
    points = []
    for batch in batches:
        probe.begin_step(batch)
        points.append(model.x.detach().clone())
        opt.zero_grad()
        loss = quadratic_loss(model, batch)
        loss.backward()
        probe.end_step(loss)
        opt.step()
    probe.close()
    rows = probe.table().dropna(subset=["full_smooth"])
    assert list(rows.index) == [3, 6]  # measured at steps 0, 3, 6; the first has no earlier point
    for t in rows.index:
        step = points[t] - points[t - 3]
        expected = float((a @ step).norm() / step.norm())
        assert rows.loc[t, "full_smooth"] == pytest.approx(expected, rel=1e-12)
        assert rows.loc[t, "full_smooth_grad_norm"] == pytest.approx(float((a @ points[t - 3] + b).norm()),
                                                                     rel=1e-12)  # fmt: skip
    eigenvalues = torch.linalg.eigvalsh(a)
    assert (rows["full_smooth"] <= float(eigenvalues[-1]) * (1 + 1e-12)).all()


def test_state_survives_a_checkpoint(spd_quadratic):
    """A resumed metric measures against the point saved before the checkpoint, not from scratch."""
    evaluator = Evaluator(spd_quadratic, quadratic_loss)
    first, second = FullSmoothness(), FullSmoothness()
    for metric in (first, second):
        metric.attach([torch.zeros(1)], seed=0)
    x0 = {"x": spd_quadratic.x.detach().clone()}
    x1 = {"x": x0["x"] + 0.1}
    assert math.isnan(first.compute(evaluator, x0, torch.zeros(1), 0)["full_smooth"])
    second.load_state_dict(first.state_dict())
    assert second.compute(evaluator, x1, torch.zeros(1), 1) == first.compute(evaluator, x1, torch.zeros(1), 1)


def test_without_an_evaluation_loader_the_error_says_what_to_pass():
    with pytest.raises(OptprobeError, match="pass eval_loader"):
        FullSmoothness().attach(None, seed=0)


def _dropout_mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 6), nn.Dropout(0.2), nn.Linear(6, 1)).double()


def _data(n: int = 30):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(n, 3, generator=g, dtype=torch.float64)
    return x, x.sum(1, keepdim=True) + 0.1 * torch.randn(n, 1, generator=g, dtype=torch.float64)


def _probed_run(out_dir, full_batch_every: int, periodic: list, reference=None, steps=5, stop_at=None,
                state=None):  # fmt: skip
    """SGD steps on a dropout MLP with F over two chunks; the Probe's table, or at step ``stop_at`` a
    checkpoint that ``state`` resumes from."""
    model = _dropout_mlp()
    x, y = _data(6 * steps)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    config = ProbeConfig(full_batch_every=full_batch_every, full_batch_at_epoch_end=False)
    chunks = [(x[:16], y[:16]), (x[16:], y[16:])]
    probe = Probe(model, mse_loss, optimizer=opt, out_dir=out_dir, metrics=["norms"], periodic=periodic,
                  reference=reference, eval_loader=chunks, config=config,
                  if_exists="resume" if state else "error")  # fmt: skip
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        probe.load_state_dict(state["probe"])
        torch.set_rng_state(state["rng"])
    batches = [(x[i : i + 6], y[i : i + 6]) for i in range(0, 6 * steps, 6)]
    for t in range(probe.step, steps):
        if t == stop_at:
            return {"model": model.state_dict(), "opt": opt.state_dict(), "probe": probe.state_dict(),
                    "rng": torch.get_rng_state()}  # fmt: skip
        probe.begin_step(batches[t])
        opt.zero_grad()
        loss = mse_loss(model, batches[t])
        loss.backward()
        probe.end_step(loss)
        opt.step()
    probe.close()
    return probe.table()


def test_one_gradient_pass_over_f_per_step_for_full_batch_metrics_and_full_smoothness(tmp_path, monkeypatch):
    """With full_batch_every=1 and FullSmoothness(every=1), ∇F(x_t) is computed once per step and shared;
    F(x*) (no gradient) once per run."""
    passes = Counter()
    real = Evaluator.full_loss_and_grad

    def counted(self, params, loader, seed=0, with_grad=True):
        passes["grad" if with_grad else "loss"] += 1
        return real(self, params, loader, seed, with_grad)

    monkeypatch.setattr(Evaluator, "full_loss_and_grad", counted)
    table = _probed_run(tmp_path, 1, [FullSmoothness(every=1)], reference=_dropout_mlp(), steps=4)
    assert table["full_loss"].notna().all() and table["full_smooth"].iloc[1:].notna().all()
    assert passes == {"grad": 4, "loss": 1}


def test_sharing_the_pass_leaves_every_value_bitwise_unchanged(tmp_path):
    """The rows with both consumers equal, exactly, those of a run with each consumer alone."""
    both = _probed_run(tmp_path / "both", 1, [FullSmoothness(every=1)])
    batch_only = _probed_run(tmp_path / "fullbatch", 1, [])
    smooth_only = _probed_run(tmp_path / "smooth", 0, [FullSmoothness(every=1)])
    pd.testing.assert_frame_equal(both[batch_only.columns], batch_only, check_exact=True)
    pd.testing.assert_frame_equal(both[smooth_only.columns], smooth_only, check_exact=True)


def test_killed_and_resumed_from_a_checkpoint_the_table_is_the_same(tmp_path):
    """Both consumers of ∇F(x_t), 3 of 6 steps, a checkpoint, a new Probe that resumes: the same rows."""
    whole = _probed_run(tmp_path / "whole", 1, [FullSmoothness(every=1)], steps=6)
    state = _probed_run(tmp_path / "cut", 1, [FullSmoothness(every=1)], steps=6, stop_at=3)
    cut = _probed_run(tmp_path / "cut", 1, [FullSmoothness(every=1)], steps=6, state=state)
    assert cut["full_smooth"].iloc[3:].notna().all()
    pd.testing.assert_frame_equal(whole, cut, check_exact=True)
