"""Scale-freeness (Orabona, parts 2–3): a scale-free method ignores a diagonal rescaling of the gradients.

Finding: Adam, AdaGrad, Lion run the same iterates on f and its twin f̃_Λ (Hessian ΛH, same x*), GD does not;
AdamW, AdamProx run the same trajectory on F and c·F, Adam+L2 does not; AdamW trains to a lower loss.
Statistics, per seed then a t-interval across seeds: δ = max_t |a_t − b_t| / |a_t| between paired runs, with
a_t = ‖x_t‖ (= ‖x_t − x*‖, x* = 0) for the quadratics and a_t = ℓ_t/c for the ResNet; log10 F(x_T)/F(x_0) with
F(x_T) the mean loss of the last FINAL_STEPS steps; log10(F̄_AdamW / F̄_Adam+L2).
"""

from __future__ import annotations

import math

import numpy as np

from optprobe.findings.base import Check, Criterion, Runs, SeedRun, across_seeds
from optprobe.report.verdicts import series

FINAL_STEPS = 10
SCALE_FREE = {"adam": "Adam", "adagrad": "AdaGrad", "lion": "Lion"}
DECAYS = {"adamw": "AdamW", "adam_prox": "AdamProx", "adam_l2": "Adam+L2"}


def loss_scale(run: SeedRun) -> float:
    """The c of a run trained on c·F (1 when the task has no ``loss_scale``)."""
    return float(run.info.get("run_config", {}).get("task_options", {}).get("loss_scale", 1.0))


def trajectory_gap(a: SeedRun, b: SeedRun, column: str) -> float:
    """max over common steps of |a_t − b_t| / |a_t|, ``column`` divided by each run's loss scale if 'loss'."""
    x, y = series(a.table, column), series(b.table, column)
    if column == "loss":
        x, y = x / loss_scale(a), y / loss_scale(b)
    x, y = x.align(y, join="inner")
    return float(np.max(np.abs(x - y) / np.abs(x))) if len(x) else math.nan


def final_loss(run: SeedRun) -> float:
    """Mean of ℓ_t / c over the last FINAL_STEPS steps."""
    loss = series(run.table, "loss")
    return float(loss.iloc[-FINAL_STEPS:].mean()) / loss_scale(run) if len(loss) else math.nan


def gap_closed_log10(run: SeedRun) -> float:
    """log10 F(x_T)/F(x_0) on a quadratic whose minimum is 0 (F(x_T): the final loss)."""
    loss = series(run.table, "loss")
    return math.log10(final_loss(run) / float(loss.iloc[0])) if len(loss) else math.nan


def _pair_check(runs: Runs, a: str, b: str, column: str, criterion: Criterion, what: str) -> Check:
    pairs = zip(runs[a], runs[b], strict=False)
    est = across_seeds([trajectory_gap(x, y, column) for x, y in pairs])
    return Check(f"{what}: max_t relative difference, {a} vs {b}", est, criterion, f"{est.n} seeds")


def test(runs: Runs, same_rtol: float, differ_min: float, gap_log10_max: float,
         adamw_edge_log10: float) -> list[Check]:  # fmt: skip
    """The checks of the scale-freeness finding; the criterion numbers come from the experiment file."""
    same, differ = Criterion("<", same_rtol), Criterion(">", differ_min)
    checks = [
        _pair_check(runs, name, f"{name}_twin", "param_norm", same, f"{label} ‖x_t‖ on f and f̃_Λ")
        for name, label in SCALE_FREE.items()
    ]
    checks.append(_pair_check(runs, "gd", "gd_twin", "param_norm", differ, "GD ‖x_t‖ on f and f̃_Λ"))
    worst = across_seeds([
        max(gap_closed_log10(runs[name][i]) for name in SCALE_FREE) for i in range(len(runs["adam"]))
    ])  # fmt: skip
    checks.append(Check(
        "log10 F(x_T)/F(x_0) on the ill-conditioned f, worst of Adam, AdaGrad, Lion", worst,
        Criterion("<", gap_log10_max), f"the runs close most of the gap to the optimum; {worst.n} seeds",
    ))  # fmt: skip
    for name, label in DECAYS.items():
        criterion = differ if name == "adam_l2" else same
        what = f"{label} loss/c on F and c·F"
        checks.append(_pair_check(runs, name, f"{name}_x16", "loss", criterion, what))
    pairs = zip(runs["adamw"], runs["adam_l2"], strict=False)
    edge = across_seeds([math.log10(final_loss(w) / final_loss(l2)) for w, l2 in pairs])
    prox = np.mean([
        abs(final_loss(p) / final_loss(w) - 1) for p, w in zip(runs["adam_prox"], runs["adamw"], strict=False)
    ])  # fmt: skip
    checks.append(Check(
        "log10(final loss AdamW / Adam+L2), ResNet without normalization", edge,
        Criterion("<", adamw_edge_log10),
        f"same lr and λ; final loss = mean of the last {FINAL_STEPS} steps; AdamProx's final loss differs "
        f"from AdamW's by {100 * prox:.2g}% on average; {edge.n} seeds",
    ))  # fmt: skip
    return checks
