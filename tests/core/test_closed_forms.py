"""Trajectory metrics against closed forms: quadratics, least squares, logistic regression, a double well."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import Quadratic, logistic_loss, mse_loss, quadratic_loss, train
from torch import nn

from optprobe.probe import Probe, ProbeConfig


def _iterates(model: Quadratic, steps: int, lr: float) -> list[torch.Tensor]:
    xs = [model.x.detach().clone()]
    for _ in range(steps):
        xs.append(xs[-1] - lr * (model.a @ xs[-1] + model.b))
    return xs


def test_quadratic_gap_smoothness_and_correlation_match_closed_forms(spd_quadratic, tmp_path):
    model, steps, lr = spd_quadratic, 8, 0.05
    xs = _iterates(model, steps, lr)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    probe = Probe(model, quadratic_loss, optimizer=opt, out_dir=tmp_path)
    train(model, quadratic_loss, [None] * steps, opt, probe)
    table = probe.table().set_index("step")
    a, b = model.a, model.b
    for t in range(1, steps):
        delta = xs[t] - xs[t - 1]
        row = table.loc[t]
        assert row["inst_gap_prev"] == pytest.approx(float(-0.5 * delta @ a @ delta), rel=1e-9, abs=1e-12)
        assert row["inst_smooth_prev"] == pytest.approx(float((a @ delta).norm() / delta.norm()), rel=1e-9)
        assert row["update_corr"] == pytest.approx(float((a @ xs[t] + b) @ delta), rel=1e-9, abs=1e-12)
        assert row["update_norm"] == pytest.approx(float(delta.norm()), rel=1e-9)
        assert row["grad_linf"] == pytest.approx(float((a @ xs[t] + b).abs().max()), rel=1e-9)
        assert row["grad_l1"] == pytest.approx(float((a @ xs[t] + b).abs().sum()), rel=1e-9)


def test_gap_identity_holds_to_float_precision(spd_quadratic, tmp_path):
    model = spd_quadratic
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    probe = Probe(model, quadratic_loss, optimizer=opt, out_dir=tmp_path)
    train(model, quadratic_loss, [None] * 12, opt, probe)
    t = probe.table().iloc[1:]
    np.testing.assert_allclose(t["inst_gap_prev"], t["loss_diff"] - t["update_corr"], rtol=0, atol=1e-15)


def test_ema_and_window_follow_the_definitions(spd_quadratic, tmp_path):
    model = spd_quadratic
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    probe = Probe(
        model, quadratic_loss, optimizer=opt, out_dir=tmp_path, config=ProbeConfig(betas=(0.9, 0.5))
    )
    train(model, quadratic_loss, [None] * 6, opt, probe)
    t = probe.table()
    gaps = t["inst_gap_prev"].to_numpy()[1:]
    for beta in (0.9, 0.5):
        e = 0.0
        for g in gaps:
            e = beta * e + (1 - beta) * g
        assert t[f"exp_gap_prev_{beta:g}"].iloc[-1] == pytest.approx(e, rel=1e-12)
    assert t["avg_gap_prev"].iloc[-1] == pytest.approx(gaps.mean(), rel=1e-12)
    assert t["max_smooth_prev"].iloc[-1] == pytest.approx(t["inst_smooth_prev"].max(), rel=1e-12)


def _linear_data(n: int = 96, d: int = 5, logistic: bool = False):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    w = torch.randn(d, generator=g, dtype=torch.float64)
    y = x @ w + 0.1 * torch.randn(n, generator=g, dtype=torch.float64)
    if logistic:
        y = (y > 0).to(torch.float64)
    return x, y


@pytest.mark.parametrize("logistic", [False, True], ids=["least_squares", "logistic"])
def test_convex_models_have_nonpositive_gaps_at_every_step(logistic, tmp_path):
    x, y = _linear_data(logistic=logistic)
    model = nn.Linear(5, 1).double()
    loss_fn = logistic_loss if logistic else mse_loss
    reference = nn.Linear(5, 1).double()
    opt = (
        torch.optim.AdamW(model.parameters(), lr=0.05)
        if logistic
        else torch.optim.SGD(model.parameters(), lr=0.05)
    )
    batches = [(x[i : i + 16], y[i : i + 16]) for i in range(0, 96, 16)]
    probe = Probe(model, loss_fn, optimizer=opt, reference=reference, out_dir=tmp_path)
    train(model, loss_fn, batches, opt, probe, epochs=4)
    t = probe.table().query("event == 'step'")
    assert t["inst_gap_prev"].iloc[1:].max() <= 1e-12
    assert t["inst_gap_ref"].max() <= 1e-12
    assert t["inst_gap_prev"].iloc[1:].notna().all()


def test_double_well_has_positive_gaps_in_its_concave_region(tmp_path):
    """f(x) = (x² − 1)² is concave on |x| < 1/√3: GD started at 0.05 crosses it with positive gaps."""

    class Well(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.x = nn.Parameter(torch.tensor([0.05], dtype=torch.float64))

        def forward(self, _b: object) -> torch.Tensor:
            return ((self.x**2 - 1) ** 2).sum()

    model, lr, steps = Well(), 0.05, 6
    xs = [0.05]
    for _ in range(steps):
        xs.append(xs[-1] - lr * 4 * xs[-1] * (xs[-1] ** 2 - 1))
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    probe = Probe(model, quadratic_loss, optimizer=opt, out_dir=tmp_path)
    train(model, quadratic_loss, [None] * steps, opt, probe)
    t = probe.table()

    def f(v: float) -> float:
        return (v * v - 1) ** 2

    for step in range(1, steps):
        x1, x0 = xs[step], xs[step - 1]
        expected = f(x1) - f(x0) - 4 * x1 * (x1 * x1 - 1) * (x1 - x0)
        assert expected > 0 and all(abs(v) < 1 / math.sqrt(3) for v in (x0, x1))
        assert t["inst_gap_prev"].iloc[step] == pytest.approx(expected, rel=1e-9)
