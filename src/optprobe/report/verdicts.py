"""The assumption report card: pure functions from a run's table (and run.json) to verdicts.

Each ``check_*`` function tests one assumption of a convergence proof against the measured run and
returns one :class:`Verdict`. Its docstring states the criterion; the thresholds are the module
constants below. A missing column, or one with no finite value, gives "not measured", never an error.
Tables are read in step order; NaN means "not defined at this step" and is skipped.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np
import pandas as pd

from optprobe.curvature.relaxed import relaxed_smoothness
from optprobe.runinfo import divergence_expected

RunInfo = Mapping[str, Any]

#: A convexity gap counts as ≤ 0 when gap ≤ GAP_RTOL·(1 + |loss|) (round-off in a difference of losses).
GAP_RTOL = 1e-6
#: L-smoothness: L̂ is stable when max(second half) ≤ SMOOTH_STABLE_FACTOR · max(first half).
SMOOTH_STABLE_FACTOR = 1.1
#: Fewest finite values a trend statistic (halves, thirds, a fit) is computed from.
MIN_POINTS = 6
#: Level of the update-correlation confidence interval.
CONFIDENCE = 0.95
#: Number of batch means in the update-correlation interval (plain t-interval below 2× this many steps).
BATCH_MEANS = 20
#: Random-scaling identity: the per-step differences d_t = update_corr_rs − loss_diff have mean zero, so
#: their sum must satisfy |Σ d_t| ≤ RS_IDENTITY_Z · √n · std(d_t) (a 3-sigma bound on a zero-mean walk).
RS_IDENTITY_Z = 3.0
#: Stationarity holds when ‖∇F‖_last / ‖∇F‖_first ≤ STATIONARY_RATIO; fails when the ratio is ≥ 1.
STATIONARY_RATIO = 0.1
#: Variance reduction holds when mean grad_std(last third) / mean grad_std(first third) < this.
VARIANCE_RATIO = 1.0
#: PL: μ̂ = min pl_ratio is "bounded away from 0" when it is ≥ PL_FLOOR · median pl_ratio.
PL_FLOOR = 1e-3
#: (L0, L1): L1 is needed when the fitted envelope's sum is this fraction below the constant one's.
RELAXED_MIN_GAIN = 0.1
#: (g_t, L_t) columns for the (L0, L1) fit, preferred first: F's secant smoothness, then the minibatch one.
RELAXED_PAIRS = (
    ("full_smooth_grad_norm", "full_smooth"),
    ("full_grad_norm", "inst_smooth_prev"),
    ("grad_norm", "inst_smooth_prev"),
)
#: Edge of stability: |sharpness / (2/η) − 1| ≤ EOS_TOL.
EOS_TOL = 0.1
#: Edge of stability: the share of the last sharpness measurements whose median is judged.
EOS_TAIL = 0.25
#: ℓ∞ geometry favours Adam-type methods when ‖H‖₁,₁ / (d‖H‖₂) < L_INF_RATIO.
L_INF_RATIO = 1.0


class Label(str, Enum):
    """The five verdicts of the report card."""

    HOLDS = "holds"
    HOLDS_WITH_FACTOR = "holds with factor α"
    FAILS = "fails"
    INCONCLUSIVE = "inconclusive"
    NOT_MEASURED = "not measured"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Verdict:
    """One row of the report card.

    key: short identifier (a column of :func:`optprobe.report.compare`).
    value: the statistic's value (NaN when not measured).
    params: constants the verdict comes with (α, L̂, μ̂, L0/L1, interval bounds).
    """

    key: str
    assumption: str
    statistic: str
    value: float
    criterion: str
    verdict: Label
    detail: str = ""
    params: Mapping[str, float] = field(default_factory=dict)


def series(table: pd.DataFrame, column: str) -> pd.Series:
    """The finite values of ``column`` in step order, indexed by step (empty when the column is absent)."""
    if column not in table.columns:
        return pd.Series(dtype=float)
    ordered = table.sort_values("step", kind="stable") if "step" in table.columns else table
    values = pd.to_numeric(ordered[column], errors="coerce")
    if "step" in ordered.columns:
        values.index = ordered["step"].to_numpy()
    return values[np.isfinite(values)].astype(float)


def _not_measured(key: str, assumption: str, statistic: str, criterion: str, needs: str) -> Verdict:
    return Verdict(
        key, assumption, statistic, math.nan, criterion, Label.NOT_MEASURED, f"needs {needs} in the table"
    )


def paired(table: pd.DataFrame, a: str, b: str) -> pd.DataFrame:
    """Rows where both columns are finite, as a two-column frame."""
    if a not in table.columns or b not in table.columns:
        return pd.DataFrame(columns=[a, b], dtype=float)
    pair = table[[a, b]].apply(pd.to_numeric, errors="coerce")
    return pair[np.isfinite(pair).all(axis=1)]


# ------------------------------------------------------------------------------------ convexity
def check_convexity_path(table: pd.DataFrame, info: RunInfo | None = None, against: str = "prev") -> Verdict:
    """Convexity at every step: share of measured steps with inst_gap ≤ GAP_RTOL·(1 + |loss|).

    Holds when the share is 1 (every gap is ≤ 0 up to round-off), fails otherwise. The detail says
    whether the run is still convex *on average* (see :func:`check_convexity_average`).
    """
    key, col = f"convexity_{against}", f"inst_gap_{against}"
    point = "x_{t−1}" if against == "prev" else "x*"
    assumption = f"convexity along the path (against {point})"
    criterion = "share of steps with inst_gap ≤ tol = 1 (tol = 1e-6·(1+|loss|))"
    gaps = series(table, col)
    if gaps.empty:
        return _not_measured(key, assumption, f"share of {col} ≤ tol", criterion, col)
    tol = _gap_tolerance(table, gaps)
    share = float((gaps <= tol).mean())
    mean_gap = float(gaps.mean())
    on_average = "convex on average" if mean_gap <= float(tol.mean()) else "not even convex on average"
    positive = int((gaps > tol).sum())
    detail = f"{positive} of {len(gaps)} steps have a positive gap; mean gap {mean_gap:.3g}: {on_average}"
    label = Label.HOLDS if share == 1.0 else Label.FAILS
    return Verdict(key, assumption, f"share of {col} ≤ tol", share, criterion, label, detail)


def check_convexity_ref(table: pd.DataFrame, info: RunInfo | None = None) -> Verdict:
    """Convexity along the path against x*: :func:`check_convexity_path` on ``inst_gap_ref``."""
    return check_convexity_path(table, info, against="ref")


def check_convexity_average(table: pd.DataFrame, info: RunInfo | None = None) -> Verdict:
    """Convexity on average: the mean of inst_gap_prev over all measured steps is ≤ its mean tolerance.

    This is what regret-style analyses need (Σ_t gap_t ≤ 0), weaker than convexity at every step.
    The detail gives the final exp_gap values (the EMA the paper plots); the verdict uses the mean.
    """
    key, assumption = "convexity_average", "convexity on average along the path"
    statistic, criterion = "mean inst_gap_prev", "mean gap ≤ mean tol (tol = 1e-6·(1+|loss|))"
    gaps = series(table, "inst_gap_prev")
    if gaps.empty:
        return _not_measured(key, assumption, statistic, criterion, "inst_gap_prev")
    mean_gap, tol = float(gaps.mean()), float(_gap_tolerance(table, gaps).mean())
    emas = {c: series(table, c) for c in table.columns if c.startswith("exp_gap_prev_") and "/" not in c}
    finals = ", ".join(f"{c} = {s.iloc[-1]:.3g}" for c, s in emas.items() if not s.empty)
    detail = f"final {finals}" if finals else "no exp_gap column"
    return Verdict(
        key,
        assumption,
        statistic,
        mean_gap,
        criterion,
        Label.HOLDS if mean_gap <= tol else Label.FAILS,
        detail,
    )


def _gap_tolerance(table: pd.DataFrame, gaps: pd.Series) -> pd.Series:
    loss = series(table, "loss")
    loss = loss[~loss.index.duplicated(keep="last")].reindex(gaps.index).fillna(0.0)
    return GAP_RTOL * (1.0 + loss.abs())


def check_convexity_ratio(table: pd.DataFrame, info: RunInfo | None = None) -> Verdict:
    """Convexity ratio against x*: the final ``convexity_ratio`` r.

    r ≥ 1 holds (the convex-analysis inequality); 0 < r < 1 holds with factor α = r (weak
    quasi-convexity: bounds lose a factor 1/α); r ≤ 0 fails.
    """
    key, assumption = "convexity_ratio", "convexity ratio against x*"
    statistic, criterion = "final convexity_ratio r", "r ≥ 1 holds; 0 < r < 1 holds with α = r; r ≤ 0 fails"
    ratio = series(table, "convexity_ratio")
    if ratio.empty:
        return _not_measured(key, assumption, statistic, criterion, "convexity_ratio (a reference x*)")
    r = float(ratio.iloc[-1])
    detail = f"min {ratio.min():.3g}, max {ratio.max():.3g} over {len(ratio)} measurements"
    if r >= 1.0:
        return Verdict(key, assumption, statistic, r, criterion, Label.HOLDS, detail)
    if r > 0.0:
        detail += f"; convergence bounds lose a factor 1/α = {1 / r:.3g}"
        return Verdict(
            key, assumption, statistic, r, criterion, Label.HOLDS_WITH_FACTOR, detail, {"alpha": r}
        )
    return Verdict(key, assumption, statistic, r, criterion, Label.FAILS, detail)


# ----------------------------------------------------------------------------------- smoothness
def check_smoothness(table: pd.DataFrame, info: RunInfo | None = None) -> Verdict:
    """L-smoothness along the path: L̂ = max inst_smooth_prev, and whether that maximum has stabilised.

    Holds with L̂ when max(second half of the steps) ≤ SMOOTH_STABLE_FACTOR · max(first half); fails
    when the running maximum keeps growing (no global L is visible); inconclusive below MIN_POINTS
    values. inst_smooth is a lower bound on L restricted to the path. When ``sharpness`` was
    measured, the detail compares L̂ with max λ_max.
    """
    key, assumption = "smoothness", "L-smoothness along the path"
    statistic, criterion = "L̂ = max inst_smooth_prev", "max(2nd half) ≤ 1.1·max(1st half)"
    smooth = series(table, "inst_smooth_prev")
    if smooth.empty:
        return _not_measured(key, assumption, statistic, criterion, "inst_smooth_prev")
    l_hat = float(smooth.max())
    half = len(smooth) // 2
    first, second = float(smooth.iloc[:half].max()), float(smooth.iloc[half:].max()) if half else math.nan
    detail = f"max over 1st half {first:.3g}, over 2nd half {second:.3g}"
    sharp = series(table, "sharpness")
    if not sharp.empty:
        detail += f"; max sharpness {sharp.max():.3g} (L̂ / λ_max = {l_hat / sharp.max():.3g})"
    if len(smooth) < MIN_POINTS:
        return Verdict(
            key, assumption, statistic, l_hat, criterion, Label.INCONCLUSIVE, "too few steps; " + detail
        )
    label = Label.HOLDS if second <= SMOOTH_STABLE_FACTOR * first else Label.FAILS
    if label is Label.FAILS:
        detail += ": the running max still grows"
    return Verdict(key, assumption, statistic, l_hat, criterion, label, detail, {"L": l_hat})


def relaxed_pairs(table: pd.DataFrame) -> pd.DataFrame:
    """The finite (g_t, L_t) rows of the first :data:`RELAXED_PAIRS` pair with MIN_POINTS rows (else the
    last pair's)."""
    for columns in RELAXED_PAIRS:
        pairs = paired(table, *columns)
        if len(pairs) >= MIN_POINTS:
            break
    return pairs


def check_relaxed_smoothness(table: pd.DataFrame, info: RunInfo | None = None) -> Verdict:
    """(L0, L1) relaxed smoothness: does local smoothness grow with the gradient norm?

    Fits L_t ≤ L0 + L1 g_t (:func:`~optprobe.curvature.relaxed.relaxed_smoothness`) on the first of
    these (g, L) column pairs with MIN_POINTS rows: Zhang et al.'s estimator on F (full_smooth_grad_norm,
    full_smooth: :mod:`~optprobe.metrics.full_smoothness`), then the minibatch inst_smooth_prev against
    full_grad_norm, then against grad_norm. The gain is 1 − Σ(L0 + L1 g_t) / (n · max L_t), the
    envelope's saving over a constant L. Holds with (L0, L1) when L1 > 0 and gain ≥ RELAXED_MIN_GAIN;
    fails (a constant L does as well) otherwise.
    """
    key, assumption = "relaxed_smoothness", "(L0, L1) relaxed smoothness"
    statistic, criterion = "gain of L0 + L1‖∇‖ over constant L", "L1 > 0 and gain ≥ 0.1"
    pairs = relaxed_pairs(table)
    if len(pairs) < MIN_POINTS:
        return _not_measured(
            key, assumption, statistic, criterion,
            f"{MIN_POINTS}+ rows with a local smoothness (full_smooth or inst_smooth_prev) and a grad norm"
        )
    g, s = pairs.iloc[:, 0].to_numpy(), pairs.iloc[:, 1].to_numpy()
    fit = relaxed_smoothness(g, s)
    l0, l1 = fit.l0, fit.l1
    gain = 1.0 - (len(g) * l0 + l1 * g.sum()) / (len(g) * s.max())
    detail = (
        f"(L0, L1) = ({l0:.3g}, {l1:.3g}), {pairs.columns[1]} against {pairs.columns[0]} on {len(g)} rows; "
        f"constant L = {s.max():.3g}"
    )
    label = Label.HOLDS if l1 > 0 and gain >= RELAXED_MIN_GAIN else Label.FAILS
    return Verdict(key, assumption, statistic, gain, criterion, label, detail, {"L0": l0, "L1": l1})


def edge_ratios(table: pd.DataFrame) -> pd.Series:
    """λ_max(x_t)·η_t/2 at every sharpness measurement, η_t the learning rate of that step's row."""
    sharp, lr = series(table, "sharpness"), series(table, "lr")
    if sharp.empty or lr.empty:
        return pd.Series(dtype=float)
    lr = lr[~lr.index.duplicated(keep="first")].sort_index()
    eta = lr.reindex(sharp.index, method="ffill").fillna(float(lr.iloc[0]))
    return sharp * eta / 2.0


def last_part(values: pd.Series, fraction: float) -> pd.Series:
    """The last ⌈fraction·n⌉ values (at least one)."""
    return values.iloc[len(values) - max(1, math.ceil(fraction * len(values))) :]


def check_edge_of_stability(table: pd.DataFrame, info: RunInfo | None = None) -> Verdict:
    """Edge of stability: median of sharpness_t / (2/η_t) over the last EOS_TAIL of the sharpness rows
    (η_t the learning rate on or before that row), since at the edge the sharpness oscillates about 2/η.

    Holds ("at the edge of stability") when |ratio − 1| ≤ EOS_TOL; fails below or above the band.
    The phenomenon is predicted for full-batch GD: a run whose run.json says ``full_batch`` is false
    is "not measured" (the detail still gives the ratio).
    """
    key, assumption = "edge_of_stability", "edge of stability (sharpness ≈ 2/η)"
    statistic = f"median sharpness / (2/η), last {EOS_TAIL:.0%} of measurements"
    criterion = f"|ratio − 1| ≤ {EOS_TOL:g}"
    sharp, lr = series(table, "sharpness"), series(table, "lr")
    if sharp.empty or lr.empty:
        return _not_measured(key, assumption, statistic, criterion, "sharpness and lr")
    if (lr <= 0.0).any():
        return _not_measured(key, assumption, statistic, criterion, f"a positive lr (it is {lr.min():.3g})")
    ratios = edge_ratios(table)
    tail = last_part(ratios, EOS_TAIL)
    ratio = float(np.median(tail))
    detail = f"over the last {len(tail)} of {len(ratios)} measurements; "
    detail += f"final sharpness {sharp.iloc[-1]:.3g}, 2/η = {sharp.iloc[-1] / ratios.iloc[-1]:.3g}"
    if info is not None and info.get("full_batch") is False:
        detail = f"not full-batch GD (the prediction is for full-batch GD); {detail}, ratio {ratio:.3g}"
        return Verdict(key, assumption, statistic, math.nan, criterion, Label.NOT_MEASURED, detail)
    if abs(ratio - 1.0) <= EOS_TOL:
        return Verdict(
            key, assumption, statistic, ratio, criterion, Label.HOLDS, "at the edge of stability; " + detail
        )
    where = "below" if ratio < 1.0 else "above"
    return Verdict(key, assumption, statistic, ratio, criterion, Label.FAILS, f"{where} the edge; {detail}")


# -------------------------------------------------------------------------------- correlation
def mean_interval(values: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """Mean of every value and a ``confidence`` t-interval that allows for correlation between steps.

    The centre is the mean x̄ of all n values. With n ≥ 2·BATCH_MEANS values the spread comes from batch
    means: the series is cut into B = BATCH_MEANS contiguous batches of sizes n_b differing by at most
    one (no value dropped), whose means ȳ_b are close to independent with Var ȳ_b ≈ σ²/n_b (σ² the
    long-run variance). Then σ̂² = Σ_b n_b (ȳ_b − x̄)² / (B − 1) and the interval is
    x̄ ± t_{B−1} · σ̂/√n (with equal batches: the classic s_B/√B). Fewer values: the plain t-interval,
    x̄ ± t_{n−1} · s/√n. Fewer than 2 values: an infinite interval.
    """
    from scipy.stats import t as student

    x = np.asarray(values, float)
    if len(x) < 2:
        return (float(x.mean()) if len(x) else math.nan), -math.inf, math.inf
    mean = float(x.mean())
    if len(x) >= 2 * BATCH_MEANS:
        batches = np.array_split(x, BATCH_MEANS)
        sizes = np.array([len(b) for b in batches], float)
        means = np.array([b.mean() for b in batches])
        sem = math.sqrt(float((sizes * (means - mean) ** 2).sum()) / (BATCH_MEANS - 1) / len(x))
        dof = BATCH_MEANS - 1
    else:
        sem, dof = float(x.std(ddof=1) / math.sqrt(len(x))), len(x) - 1
    half = float(student.ppf(0.5 + confidence / 2, dof)) * sem
    return mean, mean - half, mean + half


def check_update_correlation(table: pd.DataFrame, info: RunInfo | None = None) -> Verdict:
    """Descent-lemma sign: E⟨g_t, Δ_t⟩ < 0, from the mean of update_corr and its 95% interval.

    The interval is :func:`mean_interval` (batch means, since successive steps are correlated).
    Holds when the upper bound is < 0, fails when the lower bound is > 0, inconclusive otherwise.
    """
    key, assumption = "update_correlation", "descent direction: E⟨g_t, Δ_t⟩ < 0"
    statistic, criterion = "mean update_corr [95% CI]", "CI upper < 0 holds; CI lower > 0 fails"
    corr = series(table, "update_corr")
    if corr.empty:
        return _not_measured(key, assumption, statistic, criterion, "update_corr")
    mean, low, high = mean_interval(corr.to_numpy())
    detail = (
        f"95% CI [{low:.3g}, {high:.3g}] over {len(corr)} steps; {(corr > 0).mean():.0%} of steps positive"
    )
    label = Label.HOLDS if high < 0 else Label.FAILS if low > 0 else Label.INCONCLUSIVE
    return Verdict(
        key, assumption, statistic, mean, criterion, label, detail, {"ci_low": low, "ci_high": high}
    )


def progress_identity_z(table: pd.DataFrame, column: str = "update_corr_rs") -> tuple[float, int]:
    """(z, n): z = Σ d_t / (√n · std(d_t)) for d_t = ``column`` − loss_diff over the steps having both.

    Under the random-scaling identity E[d_t] = 0, so |z| stays within a few units; NaN with < 2 steps.
    """
    if column not in table or "loss_diff" not in table:
        return math.nan, 0
    d = (table[column] - table["loss_diff"]).dropna()
    d = d[np.isfinite(d)]
    if len(d) < 2 or d.std(ddof=1) == 0:
        return math.nan, len(d)
    return float(d.sum() / (math.sqrt(len(d)) * d.std(ddof=1))), len(d)


def check_random_scaling(table: pd.DataFrame, info: RunInfo | None = None) -> Verdict:
    """Random-scaling progress identity: Σ update_corr_rs tracks Σ loss_diff.

    The identity says E[update_corr_rs − loss_diff] = 0 at every step (over s_t ~ Exp(1)), so the z-score
    of the summed differences (:func:`progress_identity_z`) holds when |z| ≤ RS_IDENTITY_Z and fails
    otherwise. It is tested only when run.json says ``random_scaling`` or the ``scale`` column varies;
    otherwise the verdict is "not measured" and the detail gives z for the plain update_corr.
    """
    key, assumption = "random_scaling", "random-scaling identity Σ⟨g, Δ/s⟩ ≈ Σ Δloss"
    statistic, criterion = "z of Σ(corr_rs − loss_diff)", f"|z| ≤ {RS_IDENTITY_Z:g}"
    scaled = (info or {}).get("random_scaling") is True or series(table, "scale").nunique() > 1
    column = "update_corr_rs" if scaled else "update_corr"
    z, n = progress_identity_z(table, column)
    if not math.isfinite(z):
        return _not_measured(
            key, assumption, statistic, criterion, f"two or more steps with {column} and loss_diff"
        )
    cum_corr, cum_diff = series(table, f"cum_{column}"), series(table, "cum_loss_diff")
    if cum_corr.empty or cum_diff.empty:
        return _not_measured(key, assumption, statistic, criterion, f"cum_{column} and cum_loss_diff")
    detail = f"over {n} steps: Σ {column} = {cum_corr.iloc[-1]:.3g}, Σ loss_diff = {cum_diff.iloc[-1]:.3g}"
    if not scaled:
        detail = f"no random scaling in this run; plain {detail} (z = {z:.2f})"
        return Verdict(key, assumption, statistic, math.nan, criterion, Label.NOT_MEASURED, detail)
    label = Label.HOLDS if abs(z) <= RS_IDENTITY_Z else Label.FAILS
    return Verdict(key, assumption, statistic, z, criterion, label, detail)


# --------------------------------------------------------------------------------- full batch
def check_stationarity(table: pd.DataFrame, info: RunInfo | None = None) -> Verdict:
    """Convergence to a stationary point: ρ = ‖∇F(x_last)‖ / ‖∇F(x_first)‖ from ``full_grad_norm``.

    Holds when ρ ≤ STATIONARY_RATIO, fails when ρ ≥ 1 (the full gradient did not shrink),
    inconclusive in between; not measured with fewer than two measurements.
    """
    key, assumption = "stationarity", "convergence to a stationary point (‖∇F‖ → 0)"
    statistic, criterion = "‖∇F‖ last / first", "≤ 0.1 holds; ≥ 1 fails"
    norms = series(table, "full_grad_norm")
    if len(norms) < 2:
        return _not_measured(key, assumption, statistic, criterion, "two or more full_grad_norm values")
    ratio = float(norms.iloc[-1] / norms.iloc[0]) if norms.iloc[0] > 0 else math.nan
    detail = f"‖∇F‖ from {norms.iloc[0]:.3g} to {norms.iloc[-1]:.3g} (min {norms.min():.3g})"
    label = Label.HOLDS if ratio <= STATIONARY_RATIO else Label.FAILS if ratio >= 1 else Label.INCONCLUSIVE
    return Verdict(key, assumption, statistic, ratio, criterion, label, detail)


def _too_few(n: int) -> str:
    """Why a trend statistic was not computed: ``n`` finite values, fewer than MIN_POINTS."""
    return f"only {n} value{'' if n == 1 else 's'} (a trend needs {MIN_POINTS} or more)"


def _thirds_ratio(values: pd.Series) -> float:
    """mean of the last third / mean of the first third (NaN when the first third is all zero)."""
    third = len(values) // 3
    first = float(values.iloc[:third].mean())
    return float(values.iloc[-third:].mean()) / first if first != 0 else math.nan


def check_variance_reduction(table: pd.DataFrame, info: RunInfo | None = None) -> Verdict:
    """Gradient noise shrinks: mean grad_std over the last third / mean over the first third.

    Holds when the ratio is < VARIANCE_RATIO, fails otherwise; inconclusive below MIN_POINTS values.
    """
    key, assumption = "variance_reduction", "gradient noise shrinks (variance reduction)"
    statistic, criterion = "grad_std last third / first third", "< 1"
    std = series(table, "grad_std")
    if std.empty:
        return _not_measured(key, assumption, statistic, criterion, "grad_std")
    if len(std) < MIN_POINTS:
        few = _too_few(len(std))
        return Verdict(key, assumption, statistic, math.nan, criterion, Label.INCONCLUSIVE, few)
    ratio = _thirds_ratio(std)
    if not math.isfinite(ratio):
        detail = "grad_std is 0: the minibatch is the full batch, so there is no gradient noise to reduce"
        return Verdict(key, assumption, statistic, math.nan, criterion, Label.NOT_MEASURED, detail)
    detail = f"grad_std from {std.iloc[0]:.3g} to {std.iloc[-1]:.3g}"
    return Verdict(
        key,
        assumption,
        statistic,
        ratio,
        criterion,
        Label.HOLDS if ratio < VARIANCE_RATIO else Label.FAILS,
        detail,
    )


def check_pl(table: pd.DataFrame, info: RunInfo | None = None) -> Verdict:
    """Polyak–Łojasiewicz: μ̂ = min pl_ratio, with pl_ratio = ½‖∇F‖² / (F − F(x*)).

    Fails when μ̂ ≤ 0 (F fell below F(x*), or ∇F = 0 away from x*); holds with μ̂ when
    μ̂ ≥ PL_FLOOR · median pl_ratio (bounded away from 0); inconclusive when μ̂ collapses below that.
    """
    key, assumption = "pl", "Polyak–Łojasiewicz condition"
    statistic, criterion = "μ̂ = min pl_ratio", "μ̂ > 0 and μ̂ ≥ 1e-3·median"
    ratio = series(table, "pl_ratio")
    if ratio.empty:
        return _not_measured(key, assumption, statistic, criterion, "pl_ratio (a reference x*)")
    mu, median = float(ratio.min()), float(ratio.median())
    detail = f"median pl_ratio {median:.3g} over {len(ratio)} measurements"
    if mu <= 0:
        detail += "; F(x_t) ≤ F(x*) at some measurement (x* is not a minimizer along this path)"
        return Verdict(key, assumption, statistic, mu, criterion, Label.FAILS, detail)
    if mu < PL_FLOOR * median:
        return Verdict(
            key, assumption, statistic, mu, criterion, Label.INCONCLUSIVE, "μ̂ collapses toward 0; " + detail
        )
    return Verdict(key, assumption, statistic, mu, criterion, Label.HOLDS, detail, {"mu": mu})


# ---------------------------------------------------------------------------------- curvature
def check_linf_geometry(table: pd.DataFrame, info: RunInfo | None = None) -> Verdict:
    """ℓ∞ geometry (Xie et al.): ρ = ‖H‖₁,₁ / (d·‖H‖₂) at the last curvature measurement.

    Adam's bound scales with ‖H‖₁,₁, SGD's with d·‖H‖₂; ρ < L_INF_RATIO holds (ℓ∞ geometry favours
    Adam-type methods), otherwise fails. Uses ``hessian_l11_per_dim`` (= ‖H‖₁,₁ / d) when present,
    else ``hessian_l11`` with d = run.json ``model.parameters``.
    """
    key, assumption = "linf_geometry", "ℓ∞ geometry favours Adam (‖H‖₁,₁ < d‖H‖₂)"
    statistic, criterion = "‖H‖₁,₁ / (d‖H‖₂)", "< 1"
    spectral = series(table, "spectral_norm")
    d = (info or {}).get("model", {}).get("parameters")
    per_dim = series(table, "hessian_l11_per_dim")
    if per_dim.empty and d:
        per_dim = series(table, "hessian_l11") / float(d)
    if spectral.empty or per_dim.empty:
        return _not_measured(key, assumption, statistic, criterion, "spectral_norm and hessian_l11(_per_dim)")
    ratio = float(per_dim.iloc[-1] / spectral.iloc[-1])
    detail = f"‖H‖₁,₁/d = {per_dim.iloc[-1]:.3g}, ‖H‖₂ = {spectral.iloc[-1]:.3g}"
    if d:
        detail += f"; ‖H‖₁,₁ = {per_dim.iloc[-1] * d:.3g} vs d‖H‖₂ = {spectral.iloc[-1] * d:.3g} (d = {d})"
    return Verdict(
        key,
        assumption,
        statistic,
        ratio,
        criterion,
        Label.HOLDS if ratio < L_INF_RATIO else Label.FAILS,
        detail,
    )


def check_diagonal_uniformity(table: pd.DataFrame, info: RunInfo | None = None) -> Verdict:
    """Uniformity of the Hessian diagonal: median over layers of the last ``r_med/<layer>``.

    Report only (no threshold; lower = more uniform): the verdict is "inconclusive" by design, and the
    detail names the least and most uniform layers.
    """
    key, assumption = "diagonal_uniformity", "uniform Hessian diagonal (R_med)"
    statistic, criterion = "median over layers of R_med", "report only (lower = more uniform)"
    last = layer_values(table, "r_med")
    if not last:
        return _not_measured(key, assumption, statistic, criterion, "r_med/<layer>")
    values = pd.Series(last)
    detail = (
        f"{len(values)} layers; most uniform {values.idxmin()} ({values.min():.3g}), "
        f"least uniform {values.idxmax()} ({values.max():.3g})"
    )
    return Verdict(key, assumption, statistic, float(values.median()), criterion, Label.INCONCLUSIVE, detail)


def layer_values(table: pd.DataFrame, metric: str) -> dict[str, float]:
    """The last finite value of each ``<metric>/<layer>`` column, keyed by layer."""
    columns = [c for c in table.columns if c.startswith(f"{metric}/")]
    last = {c.split("/", 1)[1]: series(table, c) for c in columns}
    return {layer: float(s.iloc[-1]) for layer, s in last.items() if not s.empty}


def check_divergence(table: pd.DataFrame, info: RunInfo | None = None) -> Verdict:
    """Training stayed finite: fails (value 1) when run.json records a divergence, with the step and the
    loss where training stopped; holds (value 0) for a finished run without one."""
    key, assumption = "divergence", "training stays finite (no divergence)"
    statistic, criterion = "divergences recorded in run.json", "0 in a finished run"
    record = (info or {}).get("divergence")
    if isinstance(record, dict):
        detail = (
            f"diverged: the loss is {record.get('loss')} at step {record.get('step')}; training stopped "
            f"there (on_divergence={record.get('policy')!r}), the other verdicts cover the steps before it"
        )
        if divergence_expected(info or {}):
            detail += "; the experiment expects it (this run shows a step size where training is unstable)"
        return Verdict(key, assumption, statistic, 1.0, criterion, Label.FAILS, detail)
    if not (info or {}).get("finished"):
        return _not_measured(key, assumption, statistic, criterion, "a finished run (run.json)")
    return Verdict(key, assumption, statistic, 0.0, criterion, Label.HOLDS, "the loss stayed finite")


@dataclass(frozen=True)
class About:
    """What a report-card row checks, in one plain sentence, and the paper section it comes from."""

    plain: str
    source: str


_TRAN = "Tran, Zhang & Cutkosky"
#: Verdict key → its plain explanation and source (shown under the assumption in the report card).
ABOUT: dict[str, About] = {
    "convexity_prev": About(
        "Is the loss convex along the path: does every step's loss lie above the tangent drawn at the "
        "previous point?", f"{_TRAN}, Sec. 3.1 (Fig. 1)"),
    "convexity_average": About(
        "Convex on average: are the tangent-line violations negative once averaged over the run, as "
        "regret-style convergence proofs need?", f"{_TRAN}, Sec. 3.1 (Fig. 2)"),
    "convexity_ref": About(
        "Is the loss convex between each point and the reference solution x*?", f"{_TRAN}, Sec. 3.1"),
    "convexity_ratio": About(
        "Does the gradient point away from x* as much as a convex loss would (ratio ≥ 1), or only a "
        "fraction of it (bounds then lose that factor)?", f"{_TRAN}, Sec. 3.2"),
    "smoothness": About(
        "Is there one smoothness constant L: does the largest measured gradient change per unit step stop "
        "growing?", f"{_TRAN}, Sec. 4 (Fig. 4)"),
    "relaxed_smoothness": About(
        "Does local smoothness grow with the gradient norm, so that L0 + L1‖∇F‖ bounds it more tightly "
        "than a constant?", "Orabona, part 4 ((L0, L1)-smoothness); Zhang et al. 2020"),
    "edge_of_stability": About(
        "Does full-batch GD drive the sharpness (largest Hessian eigenvalue) up to 2/η and keep it there?",
        f"{_TRAN}, Sec. 4.1 (Fig. 5), after Cohen et al. 2021"),
    "update_correlation": About(
        "Does each step move against the gradient on average (the descent-lemma sign)?",
        f"{_TRAN}, Sec. 4.2 (Figs. 6–7)"),
    "random_scaling": About(
        "With random scaling, does the summed update correlation track the summed loss change (an unbiased "
        "estimate of progress)?", f"{_TRAN}, Sec. 4.3 (Fig. 8)"),
    "stationarity": About(
        "Does the full gradient shrink toward zero (convergence to a stationary point)?",
        f"{_TRAN}, App. D.1"),
    "variance_reduction": About(
        "Does the minibatch gradient's noise shrink during training, as variance-reduction intuition says?",
        f"{_TRAN}, App. D.2"),
    "pl": About(
        "Polyak–Łojasiewicz: is ½‖∇F‖² at least a fixed multiple of the gap to the optimum?",
        "Karimi, Nutini & Schmidt 2016 (PL condition)"),
    "linf_geometry": About(
        "Is the Hessian close enough to diagonal (small ‖H‖₁,₁) for Adam's ℓ∞ analysis to beat SGD's?",
        "Xie, Mohamadi & Li, Sec. 3.2 (Theorem 3.11)"),
    "diagonal_uniformity": About(
        "How uniform is the Hessian diagonal within each layer (largest / median entry)?",
        "Jiang, Malik & Li, Sec. 4"),
    "divergence": About(
        "Did training stay finite (no loss of inf or NaN), so that the other rows describe a whole run?",
        "optprobe's runner (run.json divergence record)"),
}


Check = Callable[[pd.DataFrame, RunInfo | None], Verdict]

#: Every check, in report-card order.
CHECKS: tuple[Check, ...] = (
    check_convexity_path,
    check_convexity_average,
    check_convexity_ref,
    check_convexity_ratio,
    check_smoothness,
    check_relaxed_smoothness,
    check_edge_of_stability,
    check_update_correlation,
    check_random_scaling,
    check_stationarity,
    check_variance_reduction,
    check_pl,
    check_linf_geometry,
    check_diagonal_uniformity,
    check_divergence,
)


def _finite(verdict: Verdict) -> Verdict:
    """A verdict whose statistic overflowed (NaN or ±inf from a diverging run's values) is not measured."""
    if math.isfinite(verdict.value) or verdict.verdict in (Label.NOT_MEASURED, Label.INCONCLUSIVE):
        return verdict
    detail = f"the statistic is {verdict.value} (the run's values overflow: diverged?); {verdict.detail}"
    return dataclasses.replace(verdict, verdict=Label.NOT_MEASURED, detail=detail, params={})


def assess(table: pd.DataFrame, info: RunInfo | None = None) -> list[Verdict]:
    """The report card of one run: every check in :data:`CHECKS`, in order."""
    with np.errstate(all="ignore"):  # overflow in a diverging run's values becomes "not measured"
        return [_finite(check(table, info)) for check in CHECKS]
