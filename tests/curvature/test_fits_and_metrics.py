import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from optprobe.curvature import (
    effective_rank,
    relaxed_smoothness,
    relaxed_smoothness_table,
    singular_uniformity,
)
from optprobe.metrics.curvature import (
    DiagonalGeometry,
    HessianL11,
    HessianTrace,
    Sharpness,
    SingularUniformity,
)

from .conftest import make_case


def test_relaxed_smoothness_recovers_known_envelope():
    rng = np.random.default_rng(0)
    g = rng.uniform(0.1, 10.0, 200)
    below = 2.0 + 0.5 * g - rng.exponential(1.0, 200)
    g = np.concatenate([g, [0.1, 10.0]])
    s = np.concatenate([below, [2.0 + 0.05, 2.0 + 5.0]])  # two points on the envelope at the extremes
    fit = relaxed_smoothness(g, s)
    assert fit.l0 == pytest.approx(2.0, abs=1e-6) and fit.l1 == pytest.approx(0.5, abs=1e-6)
    assert np.all(fit.envelope(g) >= s - 1e-9)
    assert 0 < fit.near_fraction < 0.5


def test_relaxed_smoothness_fits_the_huge_values_of_a_diverging_run():
    """A run that diverges reaches ‖∇F‖ ~ 1e17: with coefficients that large HiGHS
    refused the unscaled program ("Model error"); the fit is scale-equivariant, so it must not care."""
    g = np.array([0.5, 1.0, 2.0, 1e6, 6.7e16])
    s = 2.0 + 3e-17 * g
    fit = relaxed_smoothness(g, s)
    assert fit.l0 == pytest.approx(2.0, rel=1e-6) and fit.l1 == pytest.approx(3e-17, rel=1e-6)
    small = relaxed_smoothness(g / 1e16, s / 4)
    assert small.l0 == pytest.approx(fit.l0 / 4, rel=1e-6)
    assert small.l1 == pytest.approx(fit.l1 * 1e16 / 4, rel=1e-6)


def test_relaxed_smoothness_table_global_and_per_layer():
    g = np.linspace(1, 5, 20)
    frame = pd.DataFrame(
        {
            "full_grad_norm": g,
            "sharpness": 1 + 2 * g,
            "sharpness/fc": 3 * g,
            "full_grad_norm/fc": g,
            "other": g,
        }
    )
    frame.loc[3, "sharpness"] = np.nan
    fits = relaxed_smoothness_table(frame)
    assert set(fits) == {"", "fc"}
    assert fits[""].l0 == pytest.approx(1.0, abs=1e-6) and fits[""].l1 == pytest.approx(2.0, abs=1e-6)
    assert fits["fc"].l0 == pytest.approx(0.0, abs=1e-6) and fits["fc"].l1 == pytest.approx(3.0, abs=1e-6)
    assert fits[""].near_fraction == 1.0


def test_singular_uniformity_definitions():
    assert effective_rank(torch.ones(5)) == pytest.approx(5.0)
    assert effective_rank(torch.tensor([3.0, 0.0, 0.0])) == pytest.approx(1.0)
    model = nn.Sequential(nn.Conv2d(2, 4, 3), nn.Flatten(), nn.Linear(4, 6))
    with torch.no_grad():
        model[2].weight.copy_(torch.eye(6, 4))
    stats = singular_uniformity(model)
    assert set(stats) == {"0", "2"}
    assert stats["2"].effective_rank == pytest.approx(4.0)
    u, _, _ = torch.linalg.svd(model[0].weight.detach().reshape(4, 18).double())
    sq = u[:, 0] ** 2
    assert stats["0"].r_med == pytest.approx((sq.max() / (sq.quantile(0.5) + 1e-12)).item(), rel=1e-9)


def test_metric_columns():
    case = make_case("mlp")
    args = (case.evaluator, case.params, case.batch, 0)
    sharp = Sharpness(every=5, k=2, bottom=True, tol=1e-6).compute(*args)
    assert set(sharp) == {
        "sharpness",
        "sharpness_2",
        "sharpness_hvps",
        "sharpness_converged",
        "sharpness_min",
        "spectral_norm",
    }
    assert sharp["sharpness_converged"] == 1.0
    capped = Sharpness(tol=1e-14, max_iter=3).compute(*args)
    assert capped["sharpness_converged"] == 0.0 and capped["sharpness_hvps"] == 3.0
    assert sharp["spectral_norm"] == max(abs(sharp["sharpness"]), abs(sharp["sharpness_min"]))
    assert set(HessianTrace(n_probes=10).compute(*args)) == {"hessian_trace", "hessian_trace_se"}
    geo = DiagonalGeometry(per_layer=4).compute(*args)
    assert set(geo) == {"r_med_loss"} | {
        f"{m}/{layer}"
        for m in ("r_med", "r_med_low", "r_med_high", "diag_dominance_mean", "diag_dominance_median")
        for layer in ("0", "2")
    }
    assert geo["r_med_loss"] == pytest.approx(float(case.evaluator.loss(case.params, case.batch)))
    assert all(geo[f"r_med_low/{b}"] <= geo[f"r_med/{b}"] * (1 + 1e-12) for b in ("0", "2"))
    l11 = HessianL11(n_probes=11, partition="layer").compute(*args)
    assert math.isnan(l11["hessian_l11_se"])  # one group of probes: no spread to measure
    assert HessianL11(n_probes=20).compute(*args)["hessian_l11_se"] > 0
    assert set(l11) == {
        "hessian_l11",
        "hessian_l11_per_dim",
        "hessian_l11_se",
        "blockwise_smoothness/0",
        "blockwise_smoothness/2",
    }
    sing = SingularUniformity().compute(*args)
    assert set(sing) == {"effective_rank/0", "singular_r_med/0", "effective_rank/2", "singular_r_med/2"}
    assert Sharpness(every=5).due(10) and not Sharpness(every=5).due(7)


@pytest.mark.slow
def test_gradient_descent_reaches_edge_of_stability():
    from sklearn.datasets import load_digits

    from optprobe.curvature import HessianOperator, sharpness
    from optprobe.evaluation import Evaluator, trained_parameters

    torch.manual_seed(0)
    x, y = load_digits(return_X_y=True)
    batch = (
        torch.tensor(x[:400] / 16.0, dtype=torch.float32),
        nn.functional.one_hot(torch.tensor(y[:400]), 10).float(),
    )
    model = nn.Sequential(nn.Linear(64, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 10))
    evaluator = Evaluator(model, lambda m, b: 0.5 * ((m(b[0]) - b[1]) ** 2).sum(dim=1).mean())
    eta = 0.12
    opt = torch.optim.SGD(model.parameters(), lr=eta)
    late = []
    for step in range(1001):
        if step >= 800 and step % 50 == 0:
            late.append(
                sharpness(HessianOperator(evaluator, trained_parameters(model), batch), tol=1e-4).top[0]
            )
        opt.zero_grad()
        evaluator.loss_fn(model, batch).backward()
        opt.step()
    # progressive sharpening from λ_max ≈ 8 at initialisation up to the stability threshold 2/η ≈ 16.7
    assert np.mean(late) == pytest.approx(2 / eta, rel=0.1)
