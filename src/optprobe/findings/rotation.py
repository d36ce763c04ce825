"""Rotation (Xie, Mohamadi & Li, Sec. 4.1, Table 1): Adam exploits a near-diagonal Hessian; rotating the loss
takes that away, while the rotation-equivariant SGD+M and AdaSGD run the same losses as before.

Finding: Adam < AdaSGD and Adam < SGD+M; Adam on L(Rw) ≈ AdaSGD; SGD+M, AdaSGD unchanged by R; ‖H‖₁,₁ small
(‖H‖₁,₁/d < ‖H‖₂) on L and larger on L(Rw).
Statistics, per seed, then a t-interval across seeds: r(A, B) = log10(F̄_A / F̄_B) with F̄ the mean loss of
the last FINAL_STEPS steps; δ = max_t |ℓ_t(rotated) − ℓ_t| / ℓ_t; ‖H‖₁,₁/(d‖H‖₂) and log10 of ‖H‖₁,₁ rotated /
unrotated from the Cauchy-probe estimates (mean over the run's measurements).
"""

from __future__ import annotations

import math

import numpy as np

from optprobe.findings.base import Check, Criterion, Runs, SeedRun, across_seeds, per_seed
from optprobe.report.verdicts import series

#: F̄ averages the loss of the last FINAL_STEPS steps (a constant-lr Adam step still oscillates).
FINAL_STEPS = 10
NAMES = {"adam": "Adam", "adam_rotated": "rotated Adam", "adasgd": "AdaSGD", "sgdm": "SGD+M"}


def final_loss(run: SeedRun) -> float:
    """Mean training loss over the last FINAL_STEPS steps."""
    loss = series(run.table, "loss")
    return float(loss.iloc[-FINAL_STEPS:].mean()) if len(loss) else math.nan


def log_ratio(runs: Runs, a: str, b: str) -> list[float]:
    """Per seed, log10(F̄_a / F̄_b) (seeds paired in order)."""
    return [math.log10(final_loss(x) / final_loss(y)) for x, y in zip(runs[a], runs[b], strict=False)]


def max_relative_gap(run: SeedRun, rotated: SeedRun) -> float:
    """max over common steps of |ℓ_t(rotated) − ℓ_t| / |ℓ_t|."""
    a, b = series(run.table, "loss"), series(rotated.table, "loss")
    a, b = a.align(b, join="inner")
    return float(np.max(np.abs(b - a) / np.abs(a))) if len(a) else math.nan


def mean_of(run: SeedRun, column: str) -> float:
    """Mean of the finite values of ``column`` (the Hessian is constant on a quadratic)."""
    values = series(run.table, column)
    return float(values.mean()) if len(values) else math.nan


def _ratio_check(runs: Runs, a: str, b: str, criterion: Criterion, claim: str) -> Check:
    est = across_seeds(log_ratio(runs, a, b))
    return Check(
        f"log10(final loss {NAMES[a]} / {NAMES[b]})", est, criterion,
        f"{claim}; final loss = mean of the last {FINAL_STEPS} steps; {est.n} seeds",
    )  # fmt: skip


def test(runs: Runs, adam_edge_log10: float, same_level_factor: float, equivariance_rtol: float,
         l11_over_spectral: float) -> list[Check]:  # fmt: skip
    """The checks of the rotation finding; the criterion numbers come from the experiment file."""
    band = math.log10(same_level_factor)
    checks = [
        _ratio_check(runs, "adam", "sgdm", Criterion("<", adam_edge_log10), "Adam beats SGD+M"),
        _ratio_check(runs, "adam", "adasgd", Criterion("<", adam_edge_log10), "Adam beats AdaSGD"),
        _ratio_check(
            runs, "adam_rotated", "adasgd", Criterion("in", (-band, band)),
            f"on the rotated loss Adam is within x{same_level_factor:g} of AdaSGD",
        ),
    ]  # fmt: skip
    for label in ("sgdm", "adasgd"):
        pairs = zip(runs[label], runs[f"{label}_rotated"], strict=False)
        est = across_seeds([max_relative_gap(x, y) for x, y in pairs])
        checks.append(Check(
            f"max_t |loss rotated − loss| / loss, {NAMES[label]}", est, Criterion("<", equivariance_rtol),
            f"rotation-equivariant: the same losses on L(Rw) as on L, up to float32 round-off; {est.n} seeds",
        ))  # fmt: skip
    spectral = per_seed(runs["adam"], lambda r: mean_of(r, "hessian_l11_per_dim") / mean_of(r, "sharpness"))
    checks.append(Check(
        "‖H‖₁,₁ / (d ‖H‖₂) on the unrotated loss", spectral, Criterion("<", l11_over_spectral),
        f"Cauchy-probe ‖H‖₁,₁ over Lanczos ‖H‖₂ (Theorem 3.11: Adam's edge when < 1); {spectral.n} seeds",
    ))  # fmt: skip
    grow = across_seeds([
        math.log10(mean_of(r, "hessian_l11") / mean_of(u, "hessian_l11"))
        for u, r in zip(runs["adam"], runs["adam_rotated"], strict=False)
    ])  # fmt: skip
    checks.append(Check(
        "log10(‖H‖₁,₁ rotated / ‖H‖₁,₁ unrotated)", grow, Criterion(">", 0.0),
        f"the rotation spreads the Hessian off its diagonal; Cauchy-probe estimates (the probes' seed is the "
        f"metric's, not the run's: the spread across seeds omits their sampling error); {grow.n} seeds",
    ))  # fmt: skip
    return checks
