"""Verdict functions on synthetic tables with known answers: every verdict is reachable."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from optprobe.curvature.relaxed import relaxed_smoothness
from optprobe.report.verdicts import (
    CHECKS,
    Label,
    assess,
    check_convexity_average,
    check_convexity_path,
    check_convexity_ratio,
    check_diagonal_uniformity,
    check_edge_of_stability,
    check_linf_geometry,
    check_pl,
    check_random_scaling,
    check_relaxed_smoothness,
    check_smoothness,
    check_stationarity,
    check_update_correlation,
    check_variance_reduction,
    mean_interval,
)


def table(**columns: object) -> pd.DataFrame:
    n = max(len(v) for v in columns.values() if hasattr(v, "__len__"))
    return pd.DataFrame({"step": np.arange(n), **columns})


def test_convex_path_holds_and_positive_gaps_fail():
    convex = table(loss=np.ones(50), inst_gap_prev=-np.linspace(0.0, 1.0, 50))
    assert check_convexity_path(convex).verdict is Label.HOLDS
    assert check_convexity_path(convex).value == 1.0
    assert check_convexity_average(convex).verdict is Label.HOLDS
    concave = table(loss=np.ones(50), inst_gap_prev=np.full(50, 0.1))
    assert check_convexity_path(concave).verdict is Label.FAILS
    assert check_convexity_path(concave).value == 0.0
    assert check_convexity_average(concave).verdict is Label.FAILS


def test_gaps_within_round_off_count_as_convex_and_nan_is_skipped():
    gaps = np.r_[np.nan, np.full(9, 1e-7)]  # ≤ 1e-6·(1 + 1)
    assert check_convexity_path(table(loss=np.ones(10), inst_gap_prev=gaps)).verdict is Label.HOLDS
    assert check_convexity_path(table(loss=np.ones(10), inst_gap_prev=gaps * 100)).verdict is Label.FAILS


def test_a_few_positive_gaps_fail_pointwise_but_stay_convex_on_average():
    gaps = np.r_[np.full(45, -1.0), np.full(5, 0.5)]
    t = table(loss=np.ones(50), inst_gap_prev=gaps, **{"exp_gap_prev_0.99": gaps.cumsum() / 100})
    path = check_convexity_path(t)
    assert path.verdict is Label.FAILS and path.value == pytest.approx(0.9)
    assert "5 of 50" in path.detail and "convex on average" in path.detail
    average = check_convexity_average(t)
    assert average.verdict is Label.HOLDS and average.value == pytest.approx(-0.85)
    assert "exp_gap_prev_0.99" in average.detail


def test_convexity_against_the_reference_uses_the_ref_column():
    card = {v.key: v for v in assess(table(inst_gap_ref=np.full(5, -1.0)))}
    assert card["convexity_ref"].verdict is Label.HOLDS
    assert card["convexity_prev"].verdict is Label.NOT_MEASURED


@pytest.mark.parametrize(
    ("final", "label", "alpha"),
    [(1.3, Label.HOLDS, None), (0.5, Label.HOLDS_WITH_FACTOR, 0.5), (-0.2, Label.FAILS, None)],
)
def test_convexity_ratio(final, label, alpha):
    v = check_convexity_ratio(table(convexity_ratio=[np.nan, 2.0, np.nan, final]))
    assert v.verdict is label and v.value == final
    assert v.params.get("alpha") == alpha


def test_update_correlation_interval_on_negative_positive_and_zero_mean_series():
    rng = np.random.default_rng(0)
    noise = rng.standard_normal(400)
    assert check_update_correlation(table(update_corr=noise - 1.0)).verdict is Label.HOLDS
    assert check_update_correlation(table(update_corr=noise + 1.0)).verdict is Label.FAILS
    zero = check_update_correlation(table(update_corr=noise - noise.mean()))
    assert zero.verdict is Label.INCONCLUSIVE
    assert zero.params["ci_low"] < 0 < zero.params["ci_high"]
    assert check_update_correlation(table(update_corr=[np.nan, -1.0])).verdict is Label.INCONCLUSIVE


def test_mean_interval_is_the_t_interval_for_short_series_and_widens_for_correlated_ones():
    x = np.array([1.0, 2.0, 4.0, 3.0, 0.5])
    mean, low, high = mean_interval(x)
    half = stats.t.ppf(0.975, 4) * x.std(ddof=1) / math.sqrt(5)
    assert (mean, low, high) == pytest.approx((x.mean(), x.mean() - half, x.mean() + half))
    rng = np.random.default_rng(1)
    ar = np.zeros(2000)
    for i in range(1, 2000):  # AR(1), ρ = 0.95: a naive t-interval is ~6× too narrow
        ar[i] = 0.95 * ar[i - 1] + rng.standard_normal()
    _, low, high = mean_interval(ar)
    naive = 2 * 1.96 * ar.std(ddof=1) / math.sqrt(len(ar))
    assert high - low > 3 * naive


def test_mean_interval_uses_every_step_when_n_is_not_a_multiple_of_the_batch_count():
    """The old code dropped the first n mod 20 steps, so "the mean" shown was not the series' mean."""
    x = np.r_[np.full(13, -1.0), np.linspace(0.0, 0.01, 60)]  # 73 steps: the old code dropped the 13 −1s
    mean, low, high = mean_interval(x)
    assert mean == pytest.approx(x.mean(), rel=1e-12) and low < mean < high
    batches = np.array_split(x, 20)  # sizes 4 and 3: the weighted batch-means variance, recomputed
    sizes, means = np.array([len(b) for b in batches]), np.array([b.mean() for b in batches])
    sigma2 = (sizes * (means - x.mean()) ** 2).sum() / 19
    half = stats.t.ppf(0.975, 19) * math.sqrt(sigma2 / len(x))
    assert (low, high) == pytest.approx((x.mean() - half, x.mean() + half), rel=1e-12)


def test_mean_interval_with_equal_batches_is_the_classic_batch_means_interval():
    x = np.random.default_rng(3).standard_normal(100)
    means = x.reshape(20, 5).mean(axis=1)
    half = stats.t.ppf(0.975, 19) * means.std(ddof=1) / math.sqrt(20)
    assert mean_interval(x) == pytest.approx((x.mean(), x.mean() - half, x.mean() + half), rel=1e-12)


def test_smoothness_stable_growing_and_short():
    rng = np.random.default_rng(2)
    stable = check_smoothness(table(inst_smooth_prev=5 + rng.random(100), sharpness=np.full(100, 8.0)))
    assert stable.verdict is Label.HOLDS and stable.params["L"] == stable.value <= 6
    assert "sharpness" in stable.detail
    assert check_smoothness(table(inst_smooth_prev=np.linspace(1, 10, 100))).verdict is Label.FAILS
    assert check_smoothness(table(inst_smooth_prev=[1.0, 2.0])).verdict is Label.INCONCLUSIVE


def test_relaxed_smoothness_recovers_l0_l1_and_rejects_a_constant():
    g = np.linspace(0.1, 10, 60)
    fit = relaxed_smoothness(g, 1.0 + 2.0 * g)
    l0, l1 = fit.l0, fit.l1
    assert (l0, l1) == pytest.approx((1.0, 2.0), abs=1e-6)
    v = check_relaxed_smoothness(table(full_grad_norm=g, inst_smooth_prev=1.0 + 2.0 * g))
    assert v.verdict is Label.HOLDS and v.params["L1"] == pytest.approx(2.0, abs=1e-6)
    flat = check_relaxed_smoothness(table(grad_norm=g, inst_smooth_prev=np.full(60, 3.0)))
    assert flat.verdict is Label.FAILS and "grad_norm" in flat.detail


def test_edge_of_stability_uses_the_learning_rate_of_the_last_sharpness_row():
    lr = np.full(10, 0.1)
    at_edge = check_edge_of_stability(table(lr=lr, sharpness=[np.nan] * 9 + [19.5]), {"full_batch": True})
    assert at_edge.verdict is Label.HOLDS and at_edge.value == pytest.approx(0.975)
    below = check_edge_of_stability(table(lr=lr, sharpness=[10.0] + [np.nan] * 9), {"full_batch": True})
    assert below.verdict is Label.FAILS and "below" in below.detail
    unknown = check_edge_of_stability(table(lr=lr, sharpness=[10.0] + [np.nan] * 9))  # a user's own run
    assert unknown.verdict is Label.FAILS


def test_edge_of_stability_judges_the_median_of_the_last_quarter_not_one_oscillating_point():
    sharp = [5.0, 8.0, 11.0, 14.0, 16.0, 18.0, 19.0, 20.5, 19.4, 19.6, 20.3, 24.0]  # 2/η = 20
    v = check_edge_of_stability(table(lr=np.full(12, 0.1), sharpness=sharp), {"full_batch": True})
    assert v.verdict is Label.HOLDS and v.value == pytest.approx(20.3 / 20)  # median of 19.6, 20.3, 24.0


def test_edge_of_stability_reads_a_table_whose_epoch_end_rows_repeat_a_step():
    t = table(lr=np.full(12, 0.1), sharpness=[5.0] * 9 + [19.6, 20.3, 24.0])
    t = pd.concat([t, pd.DataFrame({"step": [11], "lr": [0.1], "full_loss": [0.5]})], ignore_index=True)
    v = check_edge_of_stability(t, {"full_batch": True})
    assert v.verdict is Label.HOLDS and v.value == pytest.approx(20.3 / 20)


def test_edge_of_stability_is_not_measured_on_minibatch_runs():
    """The prediction is for full-batch GD: a minibatch run gets no verdict (its ratio is in the detail)."""
    lr = np.full(10, 0.1)
    v = check_edge_of_stability(table(lr=lr, sharpness=[np.nan] * 9 + [19.5]), {"full_batch": False})
    assert v.verdict is Label.NOT_MEASURED and math.isnan(v.value)
    assert v.detail.startswith("not full-batch GD") and "ratio 0.975" in v.detail


def test_random_scaling_identity_is_a_z_test_on_the_per_step_differences():
    rng = np.random.default_rng(0)
    diff = np.r_[np.nan, rng.normal(-0.1, 0.05, 199)]
    noise = rng.normal(0.0, 0.05, 200)  # zero-mean: the identity holds
    base = {"loss_diff": diff, "cum_loss_diff": np.nancumsum(diff), "scale": np.ones(200)}

    def run(corr):
        return table(**base, update_corr_rs=corr, cum_update_corr_rs=np.nancumsum(corr), update_corr=corr,
                     cum_update_corr=np.nancumsum(corr))  # fmt: skip

    close = check_random_scaling(run(diff + noise), {"random_scaling": True})
    assert close.verdict is Label.HOLDS and abs(close.value) <= 3
    biased = check_random_scaling(run(diff + noise + 0.02), {"random_scaling": True})
    assert biased.verdict is Label.FAILS and biased.value > 3
    plain = check_random_scaling(run(diff + noise), {"random_scaling": False})
    assert plain.verdict is Label.NOT_MEASURED and "no random scaling" in plain.detail
    varying = run(diff + noise).assign(scale=np.linspace(0.1, 3, 200))
    assert check_random_scaling(varying).verdict is Label.HOLDS  # no run.json: the scale column decides


@pytest.mark.parametrize(
    ("last", "label"), [(0.01, Label.HOLDS), (0.5, Label.INCONCLUSIVE), (2.0, Label.FAILS)]
)
def test_stationarity(last, label):
    assert check_stationarity(table(full_grad_norm=[1.0, np.nan, 0.7, last])).verdict is label


def test_variance_reduction():
    assert check_variance_reduction(table(grad_std=np.linspace(2, 1, 12))).verdict is Label.HOLDS
    assert check_variance_reduction(table(grad_std=np.linspace(1, 2, 12))).verdict is Label.FAILS
    full_batch = check_variance_reduction(table(grad_std=np.zeros(12)))
    assert full_batch.verdict is Label.NOT_MEASURED and "full batch" in full_batch.detail
    assert check_variance_reduction(table(grad_std=[1.0, 0.5])).verdict is Label.INCONCLUSIVE


def test_too_few_values_are_counted_in_plain_english():
    one = check_variance_reduction(table(grad_std=[1.0]))
    assert one.verdict is Label.INCONCLUSIVE
    assert one.detail.startswith("only 1 value (") and "values" not in one.detail.split("(")[0]
    assert check_variance_reduction(table(grad_std=[1.0, 0.5])).detail.startswith("only 2 values (")


def test_every_report_card_row_has_a_plain_explanation_and_a_source():
    from optprobe.report.verdicts import ABOUT

    keys = [v.key for v in assess(table(loss=np.ones(3)))]
    assert sorted(keys) == sorted(ABOUT)
    assert all(about.plain.endswith("?") and about.source for about in ABOUT.values())


def test_pl_condition():
    v = check_pl(table(pl_ratio=[2.0, 1.0, 0.5, 3.0]))
    assert v.verdict is Label.HOLDS and v.params["mu"] == 0.5
    assert check_pl(table(pl_ratio=[2.0, -1.0])).verdict is Label.FAILS
    assert check_pl(table(pl_ratio=[2.0, 2.0, 1e-6])).verdict is Label.INCONCLUSIVE


def test_linf_geometry_from_per_dim_or_total_l11():
    adam = check_linf_geometry(table(spectral_norm=[10.0], hessian_l11_per_dim=[0.5]))
    assert adam.verdict is Label.HOLDS and adam.value == pytest.approx(0.05)
    total = check_linf_geometry(
        table(spectral_norm=[1.0], hessian_l11=[400.0]), {"model": {"parameters": 100}}
    )
    assert total.verdict is Label.FAILS and total.value == pytest.approx(4.0) and "d = 100" in total.detail


def test_diagonal_uniformity_reports_the_median_over_layers():
    t = table(**{"r_med/a": [5.0, 2.0], "r_med/b": [np.nan, 7.0], "r_med/c": [1.0, 30.0]})
    v = check_diagonal_uniformity(t)
    assert v.value == 7.0 and v.verdict is Label.INCONCLUSIVE and "most uniform a" in v.detail


@pytest.mark.parametrize(
    "t",
    [
        pd.DataFrame(),
        pd.DataFrame({"step": [0, 1], "loss": [1.0, 0.5]}),
        pd.DataFrame({"step": [0, 1], "inst_gap_prev": [np.nan] * 2, "update_corr": [np.nan] * 2}),
    ],
)
def test_missing_columns_are_not_measured_never_an_error(t):
    card = assess(t, {})
    assert len(card) == len(CHECKS)
    assert {v.verdict for v in card} == {Label.NOT_MEASURED}
    assert all(math.isnan(v.value) and v.detail for v in card)


def test_random_scaling_without_its_cumulative_columns_is_not_measured():
    table = pd.DataFrame(
        {"step": [0, 1, 2], "update_corr_rs": [-1.0, -0.5, -0.2], "loss_diff": [-0.9, -0.6, -0.1]}
    )
    verdict = check_random_scaling(table, {"random_scaling": True})
    assert verdict.verdict == Label.NOT_MEASURED and "cum_update_corr_rs" in verdict.detail


_COLUMNS = (
    "loss", "inst_gap_prev", "inst_gap_ref", "convexity_ratio", "inst_smooth_prev", "full_grad_norm",
    "grad_norm", "sharpness", "lr", "update_corr", "update_corr_rs", "loss_diff", "cum_update_corr_rs",
    "cum_loss_diff", "grad_std", "pl_ratio", "spectral_norm", "hessian_l11_per_dim", "hessian_l11",
    "r_med/a", "scale",
)  # fmt: skip
_AWKWARD = st.sampled_from([math.nan, math.inf, -math.inf, 1e300, -1e300, 3.6e17, 1e-300, 0.0, 1.0, -1.0])


@settings(max_examples=25, deadline=None)
@given(data=st.data(), rows=st.integers(1, 45))
def test_every_verdict_survives_nan_inf_and_huge_values(data, rows):
    """A diverged run's table (‖∇F‖ ~ 1e17, inf, NaN) gives a report card, never an error: each verdict
    has a finite value, or is "not measured" (or inconclusive) with the reason."""
    columns = data.draw(st.lists(st.sampled_from(_COLUMNS), min_size=1, max_size=8, unique=True))
    t = pd.DataFrame({"step": range(rows)})
    for column in columns:
        t[column] = data.draw(st.lists(_AWKWARD, min_size=rows, max_size=rows))
    card = assess(t, {"full_batch": True, "model": {"parameters": 10}})
    assert len(card) == len(CHECKS)
    for v in card:
        assert isinstance(v.verdict, Label)
        assert math.isfinite(v.value) or (v.verdict in (Label.NOT_MEASURED, Label.INCONCLUSIVE) and v.detail)
