"""Stochastic estimators against the exact Hessian, with tolerances that follow from their variance."""

import math
import warnings

import numpy as np
import pytest
import torch

from optprobe.curvature import (
    blockwise_smoothness,
    diagonal_geometry,
    hessian_l11,
    hessian_rows,
    hessian_trace,
    hutchinson_diagonal,
    row_l1_norms,
    sample_coordinates,
)
from optprobe.errors import OptprobeError, ProbeWarning
from optprobe.evaluation import Evaluator

from .conftest import Case, Quadratic, make_case


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ProbeWarning)
        yield


def test_trace_within_four_standard_errors(case):
    h = case.hessian()
    k = 200
    est = hessian_trace(case.operator(), n_probes=k, seed=1)
    # Rademacher: Var(vᵀHv) = 2 Σ_{i≠j} H_ij²
    sd = math.sqrt(2 * ((h**2).sum() - (h.diag() ** 2).sum()).item() / k)
    assert abs(est.mean - h.trace().item()) <= 4 * sd + 1e-12
    assert est.se == pytest.approx(sd, rel=0.5, abs=1e-12)
    assert hessian_trace(case.operator(), n_probes=k, seed=1) == est


def test_hutchinson_diagonal_within_four_sd(case):
    h = case.hessian()
    k = 200
    diag = hutchinson_diagonal(case.operator(), n_probes=k, seed=2)
    sd = (((h**2).sum(dim=1) - h.diag() ** 2) / k).sqrt()
    assert ((diag - h.diag()).abs() <= 4 * sd + 1e-12).all()


def test_exact_rows_and_geometry(case):
    h = case.hessian()
    op = case.operator()
    idx = torch.tensor([0, op.dim // 2, op.dim - 1])
    torch.testing.assert_close(hessian_rows(op, idx), h[idx], rtol=1e-12, atol=1e-14)
    sample = sample_coordinates(op, per_block=5, seed=0)
    again = sample_coordinates(op, per_block=5, seed=0)
    assert all(torch.equal(sample[b], again[b]) for b in sample)
    geo = diagonal_geometry(op, per_block=5, seed=0, rows_at_once=2)
    blocks = op.layout.blocks("layer")
    for layer, i in sample.items():
        d = h.diag()[i].abs()
        full = (h[i].abs().sum(dim=1) - d) / d
        within = (h[i][:, blocks[layer]].abs().sum(dim=1) - d) / d
        g = geo[layer]
        assert g.n_sampled == min(5, blocks[layer].numel())
        assert g.r_med == pytest.approx((d.max() / (d.quantile(0.5) + 1e-12)).item(), rel=1e-10)
        assert g.dominance_mean == pytest.approx(full.mean().item(), rel=1e-10)
        assert g.dominance_median == pytest.approx(full.quantile(0.5).item(), rel=1e-10)
        assert g.within_mean == pytest.approx(within.mean().item(), rel=1e-10)
        assert g.within_median == pytest.approx(within.quantile(0.5).item(), rel=1e-10)


def test_dominance_leaves_out_rows_with_a_zero_diagonal():
    case = make_case("mlp")
    case.batch[0][:, 0] = 0.0  # an input feature that is always 0: its first-layer weights have H_ii = 0
    h = case.hessian()
    geo = diagonal_geometry(case.operator(), per_block=100, seed=0)["0"]  # every coordinate of layer 0
    layer = case.operator().layout.blocks("layer")["0"]
    d = h.diag()[layer].abs()
    kept = layer[d > 1e-12]
    ratio = (h[kept].abs().sum(dim=1) - h.diag()[kept].abs()) / h.diag()[kept].abs()
    assert geo.n_zero_diagonal == 6 == layer.numel() - kept.numel()  # one zero input column of W (6 x 4)
    assert geo.dominance_mean == pytest.approx(ratio.mean().item(), rel=1e-10)
    assert geo.dominance_median == pytest.approx(ratio.quantile(0.5).item(), rel=1e-10)
    assert math.isfinite(geo.within_mean) and math.isfinite(geo.within_median)


def test_cauchy_l11_within_median_standard_deviation(case):
    h = case.hessian().abs()
    k = 201
    est = hessian_l11(case.operator(), n_probes=k, seed=3)
    # the sample median of |Cauchy(0, s)| has asymptotic sd π s / (2√K); rows share probes, so the sum's
    # sd is at most the sum of the rows' sds: π ‖H‖₁,₁ / (2√K)
    rel_sd = math.pi / (2 * math.sqrt(k))
    rows = h.sum(dim=1)
    assert ((est.row_l1 - rows).abs() <= 5 * rel_sd * rows + 1e-12).all()
    assert est.l11 == pytest.approx(h.sum().item(), rel=4 * rel_sd)
    assert est.per_dim == pytest.approx(est.l11 / h.shape[0])
    assert hessian_l11(case.operator(), n_probes=k, seed=3).l11 == est.l11


def test_blockwise_smoothness_uses_within_block_norms(case):
    h = case.hessian().abs()
    k = 201
    rel_sd = math.pi / (2 * math.sqrt(k))
    op = case.operator()
    got = blockwise_smoothness(op, "tensor", n_probes=k, seed=4)
    for name, idx in op.layout.blocks("tensor").items():
        want = h[idx][:, idx].sum().item() / idx.numel()
        assert got[name] == pytest.approx(want, rel=4 * rel_sd, abs=1e-12)


def test_chunked_probes_and_row_passes_give_the_same_estimates():
    case = make_case("mlp")
    op = case.operator()
    one_chunk = hessian_trace(op, n_probes=40, seed=5, probes_at_once=40)
    chunked = hessian_trace(op, n_probes=40, seed=5, probes_at_once=7)
    assert (chunked.mean, chunked.se) == pytest.approx((one_chunk.mean, one_chunk.se), rel=1e-12)
    torch.testing.assert_close(
        hutchinson_diagonal(op, n_probes=40, seed=5, probes_at_once=7),
        hutchinson_diagonal(op, n_probes=40, seed=5, probes_at_once=40),
        rtol=1e-12,
        atol=1e-14,
    )
    whole = row_l1_norms(op, n_probes=40, seed=5)
    op.n_hvps = 0
    # 40 probes × (2 · 8 + 1) bytes = 680 bytes a row: 5 rows a pass, ⌈51 / 5⌉ = 11 passes
    passes = row_l1_norms(op, n_probes=40, seed=5, probes_at_once=9, max_memory=5 * 680 + 1)
    assert torch.equal(passes, whole)
    assert op.n_hvps == 11 * 40
    torch.testing.assert_close(row_l1_norms(op, 40, 5, rows=torch.tensor([3, 0, 50])), whole[[3, 0, 50]])
    with pytest.raises(OptprobeError, match="max_memory"):
        row_l1_norms(op, n_probes=40, max_memory=100)


@pytest.mark.parametrize("k", [1, 2, 5, 6])
def test_row_medians_match_sorting_with_ties(k):
    from optprobe.curvature.cauchy import _row_medians

    values = torch.randint(0, 3, (200, k)).float()
    ordered = values.double().sort(dim=1).values
    torch.testing.assert_close(_row_medians(values), (ordered[:, (k - 1) // 2] + ordered[:, k // 2]) / 2)


def _matrix_case(a: torch.Tensor) -> Case:
    """ℓ(x) = ½ xᵀ A x for a fixed symmetric A, so H = A and Σ_ij |H_ij| is known."""
    return Case("matrix", Evaluator(Quadratic(a), lambda m, b: m(b[0])), (torch.zeros(1, dtype=a.dtype),))


def _symmetric(*shape: int) -> torch.Tensor:
    a = torch.randn(*shape, generator=torch.Generator().manual_seed(11), dtype=torch.float64)
    return (a + a.transpose(-1, -2)) / 2


def test_median_bias_matches_monte_carlo_and_its_asymptote():
    from optprobe.curvature.cauchy import median_bias

    draws = np.abs(np.random.default_rng(0).standard_cauchy((100_000, 50)))
    medians = np.median(draws, axis=1)
    assert median_bias(50) == pytest.approx(medians.mean(), abs=4 * medians.std() / 100_000**0.5)
    assert median_bias(50) == pytest.approx(median_bias(49), rel=1e-10)  # b(2m) = b(2m − 1)
    assert (median_bias(1001) - 1) * 1001 == pytest.approx(math.pi**2 / 8, rel=1e-2)
    with pytest.raises(OptprobeError, match="finite mean"):
        median_bias(2)


def test_cauchy_l11_is_unbiased_at_k50_and_reports_its_standard_error():
    """H block-diagonal (100 dense 4 × 4 blocks: the 400 rows' errors are nearly independent): the mean over
    200 seeds is within 0.7% of Σ|H_ij| (> 4 standard errors of that mean; the uncorrected median is 2.6%
    high at K = 50), and the batch-means se matches the spread over seeds."""
    a = torch.block_diag(*_symmetric(100, 4, 4))
    ests = [hessian_l11(_matrix_case(a).operator(), n_probes=50, seed=seed) for seed in range(200)]
    values = torch.tensor([e.l11 for e in ests], dtype=torch.float64)
    truth = a.abs().sum().item()
    assert values.std().item() / 200**0.5 < 0.0016 * truth
    assert values.mean().item() == pytest.approx(truth, rel=7e-3)
    rms_se = torch.tensor([e.se for e in ests]).pow(2).mean().sqrt().item()
    assert rms_se == pytest.approx(values.std().item(), rel=0.2)


def test_cauchy_l11_standard_error_covers_rows_that_share_probes():
    """A dense H: every row sees the same heavy-tailed probe entries, so the rows' errors are strongly
    correlated (sd ≈ 14% of ‖H‖₁,₁ at K = 50, against ≈ 3.5% if they were independent); the batch-means se
    follows the actual spread over seeds."""
    a = _symmetric(40, 40)
    ests = [hessian_l11(_matrix_case(a).operator(), n_probes=50, seed=seed) for seed in range(100)]
    sd = torch.tensor([e.l11 for e in ests]).std().item()
    assert sd > 0.08 * a.abs().sum().item()
    assert torch.tensor([e.se for e in ests]).pow(2).mean().sqrt().item() == pytest.approx(sd, rel=0.25)
