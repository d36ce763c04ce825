"""cos(Δ_t, Δ_{t−1}) against gradient descent's closed form on a ravine."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import Quadratic, quadratic_loss, train
from torch import nn

from optprobe.probe import Probe, ProbeConfig


def test_update_cosine_matches_gd_on_a_ravine(tmp_path):
    """f = ½(x₁² + 15 x₂²), η = 0.1: Δ_t,i = −η a_i r_i^{t−1} x_0,i with r = 1 − η a = (0.9, −0.5), so the
    steep coordinate makes the steps bounce (cos < 0) until the shallow one takes over (cos > 0)."""
    a = torch.tensor([1.0, 15.0], dtype=torch.float64)
    x0 = torch.tensor([1.0, 1.0], dtype=torch.float64)
    model, lr, steps = Quadratic(torch.diag(a), torch.zeros(2, dtype=torch.float64), x0), 0.1, 14
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    probe = Probe(model, quadratic_loss, optimizer=opt, out_dir=tmp_path, metrics=["update_cosine"])
    train(model, quadratic_loss, [None] * steps, opt, probe)
    table = probe.table().set_index("step")
    r = 1 - lr * a

    def delta(t: int) -> torch.Tensor:
        return -lr * a * r ** (t - 1) * x0

    assert math.isnan(table.loc[0, "update_cos"]) and math.isnan(table.loc[1, "update_cos"])
    for t in range(2, steps):
        expected = float(delta(t) @ delta(t - 1) / (delta(t).norm() * delta(t - 1).norm()))
        assert table.loc[t, "update_cos"] == pytest.approx(expected, rel=1e-9)
    assert table.loc[2, "update_cos"] < -0.9 and table.loc[steps - 1, "update_cos"] > 0.5


def test_update_cosine_with_every_k_is_one_step_apart_and_per_layer(tmp_path):
    """With every=4 the cosine at step t still pairs Δ_t with Δ_{t−1} (not Δ_{t−4}); per-layer columns."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1)).double()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    double = {"dtype": torch.float64}
    batches = [(torch.randn(8, 3, **double), torch.randn(8, 1, **double)) for _ in range(9)]

    def loss_fn(m, b):
        return nn.functional.mse_loss(m(b[0]), b[1])

    iterates = []  # an unprobed run first: the iterates x_0 … x_8
    for batch in batches:
        iterates.append([p.detach().clone() for p in model.parameters()])
        train(model, loss_fn, [batch], opt)
    model2 = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1)).double()
    with torch.no_grad():
        for p, q in zip(model2.parameters(), iterates[0], strict=True):
            p.copy_(q)
    opt2 = torch.optim.SGD(model2.parameters(), lr=0.1, momentum=0.9)
    probe = Probe(model2, loss_fn, optimizer=opt2, out_dir=tmp_path, metrics=["update_cosine"],
                  config=ProbeConfig(every=4, per_layer=True))  # fmt: skip
    train(model2, loss_fn, batches, opt2, probe)
    table = probe.table().set_index("step")
    assert list(table.index) == [0, 4, 8]
    for t in (4, 8):  # the probed run follows the same iterates (training is bit-identical with the probe)
        d_now = [p - q for p, q in zip(iterates[t], iterates[t - 1], strict=True)]
        d_before = [p - q for p, q in zip(iterates[t - 1], iterates[t - 2], strict=True)]
        flat = [torch.cat([d.reshape(-1) for d in ds]) for ds in (d_now, d_before)]
        expected = float(flat[0] @ flat[1] / (flat[0].norm() * flat[1].norm()))
        assert table.loc[t, "update_cos"] == pytest.approx(expected, rel=1e-9)
        layer0 = [torch.cat([d.reshape(-1) for d in ds[:2]]) for ds in (d_now, d_before)]
        expected0 = float(layer0[0] @ layer0[1] / (layer0[0].norm() * layer0[1].norm()))
        assert table.loc[t, "update_cos/0"] == pytest.approx(expected0, rel=1e-9)
