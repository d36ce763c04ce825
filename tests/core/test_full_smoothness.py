"""Secant smoothness of F (Zhang et al.'s (L0, L1) estimator) against the closed form on a quadratic."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import quadratic_loss

from optprobe.errors import OptprobeError
from optprobe.evaluation import Evaluator
from optprobe.metrics.full_smoothness import FullSmoothness
from optprobe.probe import Probe


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
