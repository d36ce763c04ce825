"""Stochastic Lanczos quadrature against exact spectra: moments per start, density mass, negative fraction."""

import math

import numpy as np
import pytest
import torch
from scipy.special import ndtr

from optprobe.curvature import HessianOperator, spectral_density
from optprobe.curvature.density import lanczos_quadrature
from optprobe.evaluation import Evaluator, trained_parameters

from .conftest import Quadratic, make_case


def _operator(eigenvalues: np.ndarray, seed: int = 0) -> tuple[HessianOperator, torch.Tensor]:
    """The Hessian operator of ½ xᵀAx with A = Q diag(λ) Qᵀ (Q random orthogonal), and A."""
    gen = torch.Generator().manual_seed(seed)
    d = len(eigenvalues)
    q, _ = torch.linalg.qr(torch.randn(d, d, dtype=torch.float64, generator=gen))
    a = q @ torch.diag(torch.as_tensor(eigenvalues, dtype=torch.float64)) @ q.T
    evaluator = Evaluator(Quadratic(a), lambda m, b: m(b))
    return HessianOperator(evaluator, trained_parameters(evaluator.model), None), a


def test_quadrature_reproduces_the_moments_of_each_start_exactly():
    """Σ_j τ_j θ_j^k = qᵀ A^k q for k < 2m: with m = d steps, for every k; q = the Rademacher start / √d."""
    case = make_case("quadratic")
    op = case.operator()
    a = case.hessian()
    d = op.dim
    nodes, weights = lanczos_quadrature(op, n_starts=3, steps=d, seed=5)
    gen = torch.Generator().manual_seed(5)
    starts = torch.randint(0, 2, (3, d), generator=gen).to(torch.float64).mul_(2).sub_(1) / math.sqrt(d)
    for q, theta, tau in zip(starts, nodes, weights, strict=True):
        assert len(theta) == 7  # 7 distinct eigenvalues: the Krylov space closes after 7 steps
        for k in range(6):
            moment = float(q @ torch.linalg.matrix_power(a, k) @ q)
            assert float((tau * theta**k).sum()) == pytest.approx(moment, rel=1e-9, abs=1e-12)


def test_density_integrates_to_one_and_matches_the_exact_smoothed_histogram():
    rng = np.random.default_rng(0)
    eigenvalues = np.concatenate([rng.uniform(-2.0, -1.0, 45), rng.uniform(0.5, 4.0, 255)])
    exact_negative = 45 / 300
    op, _ = _operator(eigenvalues)
    n_starts, steps = 20, 40
    result = spectral_density(op, n_starts=n_starts, steps=steps, sigma=0.1, seed=1)
    assert result.n_hvps == n_starts * steps
    assert np.trapezoid(result.density, result.grid) == pytest.approx(1.0, abs=1e-6)
    # ±0.03: 4 standard deviations of the mean of 20 starts, sd ≈ sqrt(2 p (1 − p) / (d + 2)) ≈ 0.029 each
    assert abs(result.negative_mass - exact_negative) <= 0.03
    assert abs(result.negative_mass - exact_negative) <= 4 * result.negative_mass_se
    assert result.mass_below(0.0) == pytest.approx(result.negative_mass)
    exact = np.exp(-0.5 * ((result.grid[:, None] - eigenvalues[None, :]) / 0.1) ** 2).sum(axis=1)
    exact /= 300 * 0.1 * math.sqrt(2 * math.pi)
    l1 = np.trapezoid(np.abs(result.density - exact), result.grid)
    assert l1 < 0.15  # total variation of the smoothed estimate from the exact smoothed density


def test_null_space_is_not_counted_as_negative():
    """A Hessian with a large null space: rounding may put its Ritz values at ±1e-16, never counted."""
    eigenvalues = np.concatenate([np.zeros(60), np.linspace(1.0, 3.0, 40)])
    op, _ = _operator(eigenvalues)
    result = spectral_density(op, n_starts=4, steps=30, seed=0)
    assert result.negative_mass < 1e-12
    assert result.mass_below(0.5) == pytest.approx(0.6, abs=0.15)


def test_spectral_density_metric_reports_the_negative_mass():
    from optprobe.metrics.curvature import PERIODIC_METRICS, SpectralDensityMetric

    assert PERIODIC_METRICS["spectral_density"] is SpectralDensityMetric
    case = make_case("quadratic")  # 3 of 12 eigenvalues are negative
    metric = SpectralDensityMetric(n_starts=16, steps=12, bins=0)
    row = metric.compute(case.evaluator, case.params, case.batch, 0)
    assert set(row) == {"negative_mass", "negative_mass_se", "density_hvps"}
    assert abs(row["negative_mass"] - 0.25) <= 4 * row["negative_mass_se"]
    assert row["density_hvps"] == 16 * 7  # 7 distinct eigenvalues: every Krylov space closes after 7 steps


def test_spectral_density_metric_writes_the_exact_smoothed_density_on_its_bins():
    """H = diag(λ): every Rademacher start q/√d puts weight exactly m_i/d on an eigenvalue of multiplicity
    m_i, and Lanczos closes on the 7 distinct ones, so the bins must equal (1/d) Σ_i g_h(t − λ_i)."""
    from optprobe.metrics.curvature import SpectralDensityMetric

    eigenvalues = np.array([5.0, 3.0, 2.5] + [1.0] * 6 + [-0.5, -1.0, -2.0])
    evaluator = Evaluator(Quadratic(torch.diag(torch.as_tensor(eigenvalues))), lambda m, b: m(b))
    bins = 40
    row = SpectralDensityMetric(n_starts=4, steps=12, bins=bins).compute(
        evaluator, trained_parameters(evaluator.model), None, 0
    )
    h = (5.0 - (-2.0)) / (bins - 11)
    assert row["density_lo"] == pytest.approx(-2.0 - 5 * h, rel=1e-12)
    assert row["density_hi"] == pytest.approx(5.0 + 5 * h, rel=1e-12)
    points = np.linspace(row["density_lo"], row["density_hi"], bins)
    exact = np.exp(-0.5 * ((points[:, None] - eigenvalues[None, :]) / h) ** 2).sum(axis=1)
    exact /= len(eigenvalues) * h * math.sqrt(2 * math.pi)
    values = np.array([row[f"density_bin{j}"] for j in range(bins)])
    np.testing.assert_allclose(values, exact, rtol=1e-9, atol=1e-12)
    assert np.trapezoid(values, points) == pytest.approx(1.0, abs=1e-3)
    assert not any(k.startswith("density_bin") and int(k[11:]) >= bins for k in row)


def test_negative_mass_of_a_network_with_many_eigenvalues_near_zero():
    """An MLP at initialisation: about half its eigenvalues are negative, most of them near 0, where a hard
    count of Gauss nodes below 0 is off (0.577 vs exact 0.471 here); the smoothed mass must be within 0.03."""
    torch.manual_seed(0)
    dt = torch.float64
    nn = torch.nn
    model = nn.Sequential(nn.Linear(16, 12), nn.Tanh(), nn.Linear(12, 12), nn.Tanh(), nn.Linear(12, 5)).to(dt)
    batch = (torch.randn(64, 16, dtype=dt), torch.randint(0, 5, (64,)))
    evaluator = Evaluator(model, lambda m, b: torch.nn.functional.cross_entropy(m(b[0]), b[1]))
    op = HessianOperator(evaluator, trained_parameters(model), batch)
    eigenvalues = torch.linalg.eigvalsh(op(torch.eye(op.dim, dtype=dt))).numpy()
    exact = float((eigenvalues < 0).mean())
    result = spectral_density(op, n_starts=8, steps=40, seed=0)
    smoothed_exact = float(np.mean(ndtr(-eigenvalues / result.sigma)))
    assert 0.2 < exact < 0.8
    assert abs(result.negative_mass - exact) <= 0.03
    assert abs(result.negative_mass - smoothed_exact) <= 0.02
