"""Distance from initialisation against the closed form of gradient descent on a quadratic."""

from __future__ import annotations

import pytest
import torch
from conftest import quadratic_loss, train
from torch import nn

from optprobe.probe import Probe, ProbeConfig


def test_distance_and_inner_product_with_x0_match_gd_on_a_quadratic(spd_quadratic, tmp_path):
    """GD on ½xᵀAx + bᵀx: x_t − x* = (I − ηA)^t (x_0 − x*), so x_t − x_0 and g_t = A(x_t − x*) are known."""
    model, steps, lr = spd_quadratic, 12, 0.02
    a, b, x0 = model.a, model.b, model.x.detach().clone()
    x_star = -torch.linalg.solve(a, b)
    eigenvalues, q = torch.linalg.eigh(a)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    probe = Probe(model, quadratic_loss, optimizer=opt, out_dir=tmp_path, metrics=["distance"],
                  config=ProbeConfig(every=2))  # fmt: skip
    train(model, quadratic_loss, [None] * steps, opt, probe)
    table = probe.table().set_index("step")
    assert list(table.index) == list(range(0, steps, 2))
    for t in table.index:
        contraction = q @ torch.diag((1 - lr * eigenvalues) ** t) @ q.T
        x_t = x_star + contraction @ (x0 - x_star)
        assert table.loc[t, "dist_init"] == pytest.approx(float((x_t - x0).norm()), rel=1e-9, abs=1e-12)
        grad_dot = float((a @ (x_t - x_star)) @ (x_t - x0))
        assert table.loc[t, "grad_dot_init"] == pytest.approx(grad_dot, rel=1e-9, abs=1e-12)
    assert table.loc[0, "dist_init"] == 0.0
    assert (table["grad_dot_init"].iloc[1:] < 0).all()  # GD from x_0 towards x*: the gradient points back


def test_distance_per_layer_adds_up_and_survives_a_resume(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1)).double()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x0 = [p.detach().clone() for p in model.parameters()]
    batch = (torch.randn(16, 3, dtype=torch.float64), torch.randn(16, 1, dtype=torch.float64))

    def loss_fn(m, b):
        return nn.functional.mse_loss(m(b[0]), b[1])

    config = ProbeConfig(per_layer=True)
    probe = Probe(model, loss_fn, optimizer=opt, out_dir=None, metrics=["distance"], config=config)
    train(model, loss_fn, [batch] * 3, opt, probe)
    resumed = Probe(model, loss_fn, optimizer=opt, out_dir=None, metrics=["distance"], config=config)
    resumed.load_state_dict(probe.state_dict())
    x_t = [p.detach().clone() for p in model.parameters()]
    train(model, loss_fn, [batch], opt, resumed)
    row = resumed.last_row
    per_layer = [float(sum(((p - q) ** 2).sum() for p, q in zip(x_t[i : i + 2], x0[i : i + 2], strict=True)))
                 for i in (0, 2)]  # fmt: skip
    assert row["dist_init/0"] ** 2 == pytest.approx(per_layer[0], rel=1e-10)
    assert row["dist_init/2"] ** 2 == pytest.approx(per_layer[1], rel=1e-10)
    assert row["dist_init"] ** 2 == pytest.approx(sum(per_layer), rel=1e-10)
    assert row["grad_dot_init"] == pytest.approx(row["grad_dot_init/0"] + row["grad_dot_init/2"], rel=1e-10)
