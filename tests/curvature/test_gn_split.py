"""The Gauss–Newton split report against the exact float64 H and G of the same point and batch."""

import pytest
import torch

from optprobe.curvature import ParamLayout, gauss_newton_split
from optprobe.evaluation import Evaluator, trained_parameters

from .test_ggn import _setup, exact_ggn


@pytest.mark.parametrize("loss", ["ce", "mse"])
def test_split_matches_exact_h_and_g(loss):
    model, batch, split = _setup(loss)
    evaluator = Evaluator(model, split)
    params = trained_parameters(model)
    layout = ParamLayout.of(params)
    flat = layout.flatten(params).detach()
    h = torch.func.hessian(lambda t: evaluator.loss_at(layout.unflatten(t), batch))(flat)
    g = exact_ggn(evaluator, split, batch)
    report = gauss_newton_split(evaluator, params, batch, tol=1e-10, n_probes=200, seed=1)
    eig_h, eig_g = torch.linalg.eigvalsh(h), torch.linalg.eigvalsh(g)
    assert report.lambda_max_h == pytest.approx(float(eig_h[-1]), rel=1e-8)
    assert report.lambda_max_ggn == pytest.approx(float(eig_g[-1]), rel=1e-8)
    assert report.lambda_min_h == pytest.approx(float(eig_h[0]), rel=1e-8, abs=1e-12)
    assert report.lambda_min_h < 0  # a tanh network away from a minimum: R makes H indefinite
    assert abs(report.trace_h - float(torch.trace(h))) <= 4 * report.trace_h_se
    assert abs(report.trace_ggn - float(torch.trace(g))) <= 4 * report.trace_ggn_se
    assert report.trace_residual == pytest.approx(report.trace_h - report.trace_ggn)
    assert float(torch.trace(h - g)) != pytest.approx(0.0, abs=1e-6)  # R is not negligible here


def test_gauss_newton_metric_columns_and_values():
    from optprobe.metrics.curvature import PERIODIC_METRICS, GaussNewton

    assert PERIODIC_METRICS["gauss_newton"] is GaussNewton
    model, batch, split = _setup("ce")
    evaluator = Evaluator(model, split)
    params = trained_parameters(model)
    row = GaussNewton(tol=1e-10, n_probes=20).compute(evaluator, params, batch, 0)
    report = gauss_newton_split(evaluator, params, batch, tol=1e-10, n_probes=20)
    assert row["gn_lambda_min_h"] == pytest.approx(report.lambda_min_h)
    assert row["gn_trace_residual"] == pytest.approx(report.trace_residual)
    assert set(row) == {
        "gn_lambda_max_h", "gn_lambda_max_ggn", "gn_lambda_min_h", "gn_trace_h", "gn_trace_ggn",
        "gn_trace_residual", "gn_hvps",
    }
