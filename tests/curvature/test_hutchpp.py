"""Hutch++ against exact traces: exact on low rank, unbiased, better than Hutchinson where it should be."""

import numpy as np
import pytest
import torch

from optprobe.curvature import hessian_trace, hutchpp_trace

from .test_density import _operator


def test_hutchpp_is_exact_when_the_sketch_spans_the_range():
    """rank A = 5 ≤ ⌊m/3⌋ = 6: Q spans range(A) almost surely, so (I−QQᵀ)A(I−QQᵀ) = 0 and the estimate is
    tr A with zero standard error."""
    eigenvalues = np.concatenate([[9.0, 4.0, -3.0, 2.0, 1.5], np.zeros(55)])
    op, a = _operator(eigenvalues)
    est = hutchpp_trace(op, n_hvps=18, seed=3)
    assert est.mean == pytest.approx(float(torch.trace(a)), rel=1e-10)
    assert est.se < 1e-10
    assert op.n_hvps == 18
    assert est.n_probes == 18


def _low_rank_plus_noise() -> np.ndarray:
    rng = np.random.default_rng(1)
    return np.concatenate([np.geomspace(50.0, 2.0, 12), rng.uniform(-0.05, 0.2, 188)])


def test_hutchpp_is_unbiased_and_its_standard_error_is_honest():
    eigenvalues = _low_rank_plus_noise()
    op, a = _operator(eigenvalues)
    exact = float(torch.trace(a))
    estimates = [hutchpp_trace(op, n_hvps=30, seed=s) for s in range(40)]
    errors = np.array([e.mean - exact for e in estimates])
    ses = np.array([e.se for e in estimates])
    assert abs(errors.mean()) <= 4 * errors.std(ddof=1) / np.sqrt(len(errors))  # no bias beyond 4 se
    assert 0.5 < np.sqrt(np.mean(errors**2)) / np.sqrt(np.mean(ses**2)) < 2.0  # se matches the spread


def test_hutchpp_beats_hutchinson_at_equal_products_on_low_rank_plus_noise():
    eigenvalues = _low_rank_plus_noise()
    op, a = _operator(eigenvalues)
    exact = float(torch.trace(a))
    m = 30
    pp = np.array([hutchpp_trace(op, n_hvps=m, seed=s).mean - exact for s in range(30)])
    plain = np.array([hessian_trace(op, n_probes=m, seed=s).mean - exact for s in range(30)])
    assert np.sqrt(np.mean(pp**2)) < 0.25 * np.sqrt(np.mean(plain**2))


def test_hutchpp_refuses_too_few_products():
    op, _ = _operator(np.ones(10))
    with pytest.raises(ValueError, match="at least 4"):
        hutchpp_trace(op, n_hvps=3)
