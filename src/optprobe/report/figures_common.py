"""The figures every run gets, whatever its experiment: loss, convexity gaps, smoothness, sharpness, update
correlation, cumulative progress, norms, R_med, and the gap to the optimum when it is known.

With one run, colours tell the quantities apart; with several, colours tell the runs apart and line
styles the quantities. Legends sit outside the axes, on the right. EMAs (``exp_*``) are drawn
bias-corrected (:func:`~optprobe.report.figures_base.bias_corrected_ema`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from optprobe.report.figures_base import (
    PANEL_SIZE,
    THIN,
    Curve,
    Panel,
    Runs,
    auto_scale,
    column,
    legend,
    seed_groups,
    stacked_figure,
)
from optprobe.report.notation import mpl_math
from optprobe.report.verdicts import layer_values


def _running_mean(s: pd.Series) -> pd.Series:
    return s.expanding().mean()


def _ema(prefix: str, label: str, style: dict[str, object]) -> Curve:
    """Every EMA column ``<prefix><β>``, drawn bias-corrected."""
    return Curve(prefix, label, style, prefix=True, bias_correct=True)


def _edge(lr: pd.Series) -> pd.Series:
    return 2.0 / lr[lr > 0]


def convexity_gaps(runs: Runs) -> Figure | None:
    """Convexity gaps against x_{t−1} (and x* when measured): instantaneous, window average, and EMA
    bias-corrected: divided by 1 − β^k, k = steps since its restart at an epoch end."""
    return stacked_figure(
        runs,
        "Convexity gaps along the path (≤ 0: convex)",
        column("inst_gap", "prev"),
        [
            Panel(
                f"against {point}",
                f"gap(x_t, {point})",
                (
                    Curve(column("inst_gap", suffix), "inst_gap", THIN),
                    Curve(column("avg_gap", suffix), "avg_gap (window)", {"lw": 1.6}),
                    _ema(column("exp_gap", suffix) + "_", "exp_gap", {"lw": 1.6, "ls": "--"}),
                ),
                ((0.0, "0"),),
            )
            for suffix, point in (("prev", "x_{t−1}"), ("ref", "x*"))
        ],
    )


def convexity_ratio(runs: Runs) -> Figure | None:
    """Convexity ratio against x* (1: convex inequality, 0) and the PL ratio ½‖∇F‖²/(F − F*)."""
    return stacked_figure(
        runs,
        "Convexity against the reference x*",
        column("convexity_ratio"),
        [
            Panel(
                "Σ⟨∇F(x_i), x_i − x*⟩ / Σ(F(x_i) − F(x*))",
                "convexity ratio",
                (Curve(column("convexity_ratio"), "convexity ratio"),),
                ((1.0, "1 (convex)"), (0.0, "0")),
            ),
            Panel("PL ratio", "½‖∇F‖² / (F − F*)", (Curve(column("pl_ratio"), "PL ratio"),)),
        ],
    )


def smoothness(runs: Runs) -> Figure | None:
    """Smoothness along the path (inst/max/EMA against x_{t−1}; the EMA bias-corrected: divided by 1 − β^k,
    k = steps since its restart at an epoch end) with the learning-rate schedule."""
    return stacked_figure(
        runs,
        "Smoothness along the path",
        column("inst_smooth", "prev"),
        [
            Panel(
                "‖∇ℓ(x_t) − ∇ℓ(x_{t−1})‖ / ‖x_t − x_{t−1}‖",
                "L̂_t",
                (
                    Curve(column("inst_smooth", "prev"), "inst_smooth", THIN),
                    Curve(column("max_smooth", "prev"), "max_smooth", {"lw": 1.6}),
                    _ema(column("exp_smooth", "prev") + "_", "exp_smooth", {"lw": 1.6, "ls": "--"}),
                ),
            ),
            Panel("learning rate", "η_t", (Curve(column("lr"), "η"),), height=0.45),
        ],
    )


def sharpness(runs: Runs) -> Figure | None:
    """Sharpness λ_max(∇²F) against 2/η (full-batch GD only) and the path smoothness estimates (EMA
    bias-corrected)."""
    return stacked_figure(
        runs,
        "Sharpness and the edge of stability",
        column("sharpness"),
        [
            Panel(
                "λ_max(∇²F) vs 2/η and smoothness along the path",
                "curvature",
                (
                    Curve(column("sharpness"), "sharpness λ_max", {"lw": 1.8, "marker": "o"}),
                    Curve(column("lr"), "2/η", {"ls": ":", "lw": 1.4}, transform=_edge, full_batch_only=True),
                    Curve(column("max_smooth", "prev"), "max_smooth", {"ls": "--", "lw": 1.0}),
                    _ema(column("exp_smooth", "prev") + "_", "exp_smooth", {"ls": "-.", "lw": 1.0}),
                ),
            )
        ],
    )


def update_correlation(runs: Runs) -> Figure | None:
    """⟨g_t, Δ_t⟩ per step and its running mean (< 0 on average: descent-lemma analyses apply)."""
    return stacked_figure(
        runs,
        "Update correlation ⟨g_t, Δ_t⟩ (< 0: descent direction)",
        column("update_corr"),
        [
            Panel(
                "raw and running mean",
                "⟨g_t, x_t − x_{t−1}⟩",
                (
                    Curve(column("update_corr"), "update_corr", THIN),
                    Curve(column("update_corr"), "running mean", {"lw": 1.8}, transform=_running_mean),
                ),
                ((0.0, "0"),),
            )
        ],
    )


def random_scaling(runs: Runs) -> Figure | None:
    """Cumulative Σ⟨g, Δ⟩, Σ⟨g, Δ/s⟩ and Σ loss change (random scaling: the last two agree)."""
    return stacked_figure(
        runs,
        "Cumulative progress: update correlation vs loss change",
        column("cum_loss_diff"),
        [
            Panel(
                "cumulative sums over measured steps",
                "Σ_t",
                (
                    Curve(column("cum_update_corr"), "Σ⟨g_t, Δ_t⟩", {"lw": 1.4, "ls": "--"}),
                    Curve(column("cum_update_corr_rs"), "Σ⟨g_t, Δ_t/s_t⟩", {"lw": 1.8}),
                    Curve(column("cum_loss_diff"), "Σ(ℓ(x_t) − ℓ(x_{t−1}))", {"lw": 1.4, "ls": ":"}),
                ),
                ((0.0, "0"),),
            )
        ],
    )


def norms(runs: Runs) -> Figure | None:
    """Gradient norms (minibatch and full), gradient noise, ℓ1 gradient norm and parameter norm."""
    return stacked_figure(
        runs,
        "Gradient, noise and parameter norms",
        column("grad_norm"),
        [
            Panel(
                "gradient norm",
                "‖g_t‖₂, ‖∇F(x_t)‖₂",
                (
                    Curve(column("grad_norm"), "‖g_t‖₂", THIN),
                    Curve(column("full_grad_norm"), "‖∇F‖₂", {"lw": 1.8}),
                ),
            ),
            Panel("gradient noise", "‖g_t − ∇F(x_t)‖₂", (Curve(column("grad_std"), "grad_std"),)),
            Panel("ℓ1 gradient norm", "‖g_t‖₁", (Curve(column("grad_l1"), "‖g_t‖₁", THIN),)),
            Panel("parameter norm", "‖x_t‖₂", (Curve(column("param_norm"), "‖x_t‖₂"),)),
        ],
    )


def full_loss(runs: Runs) -> Figure | None:
    """Full-batch loss F(x_t), the minibatch loss ℓ(x_t, z_t) and the reference F(x*)."""
    return stacked_figure(
        runs,
        "Training loss",
        column("loss"),
        [
            Panel(
                "full-batch and minibatch loss",
                "loss",
                (
                    Curve(column("loss"), "ℓ(x_t, z_t)", THIN),
                    Curve(column("full_loss"), "F(x_t)", {"lw": 1.8}),
                    Curve(column("ref_full_loss"), "F(x*)", {"lw": 1.0, "ls": ":"}),
                ),
            )
        ],
    )


def r_med(runs: Runs) -> Figure | None:
    """R_med = max|H_ii| / median|H_ii| per layer (last measurement), one bar per run."""
    groups = seed_groups(runs)
    values = {g.label: pd.DataFrame([layer_values(t, column("r_med")) for t in g.tables]) for g in groups}
    layers = list(dict.fromkeys(layer for frame in values.values() for layer in frame.columns))
    if not layers:
        return None
    fig, ax = plt.subplots(figsize=(min(max(PANEL_SIZE[0], 0.5 * len(layers) * len(groups)), 9.0), 4.2))
    width = 0.8 / len(groups)
    x = np.arange(len(layers))
    for i, (label, frame) in enumerate(values.items()):
        frame = frame.reindex(columns=layers)
        mean = frame.mean().to_numpy()
        whiskers = None
        if len(frame) > 1:
            whiskers = np.vstack([mean - frame.min().to_numpy(), frame.max().to_numpy() - mean]).clip(min=0)
        ax.bar(x + (i - (len(groups) - 1) / 2) * width, mean, width, yerr=whiskers, capsize=2, label=label)
    ax.set_xticks(x, layers, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel(mpl_math("R_med = max|H_ii| / median|H_ii|"))
    auto_scale(ax, np.concatenate([frame.to_numpy().ravel() for frame in values.values()]))
    ax.set_title("Uniformity of the Hessian diagonal per layer (lower = more uniform)", fontweight="bold")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    legend(ax, max(len(frame) for frame in values.values()))
    return fig




def optimality_gap(runs: Runs) -> Figure | None:
    """Gap to the optimum F(x_t) − F(x*) on a log scale: full_loss − ref_full_loss where a reference was
    measured, else the loss of a quadratic whose minimizer is 0 (F(x*) = 0: the loss is the gap)."""
    gapped = [(label, table.assign(optimality_gap=gap)) + tuple(rest) for label, table, *rest in runs
              if (gap := _gap(table, rest[0] if rest else {})) is not None]  # fmt: skip
    return stacked_figure(
        gapped,
        "Gap to the optimum",
        "optimality_gap",
        [Panel("F(x_t) − F(x*), log scale", "F(x_t) − F(x*)", (Curve("optimality_gap", "gap"),), log=True)],
    )


def _gap(table: pd.DataFrame, info: Mapping[str, Any]) -> pd.Series | None:
    """The gap column of a table (positive values only, for the log axis), or None when F(x*) is unknown."""
    full_loss, ref_full_loss = column("full_loss"), column("ref_full_loss")
    if full_loss in table.columns and ref_full_loss in table.columns:
        full, ref = (pd.to_numeric(table[c], errors="coerce") for c in (full_loss, ref_full_loss))
        gap = full - ref
    elif _zero_minimizer_quadratic(info) and column("loss") in table.columns:
        gap = pd.to_numeric(table[column("loss")], errors="coerce")
    else:
        return None
    return gap.where(gap > 0)


def _zero_minimizer_quadratic(info: Mapping[str, Any]) -> bool:
    config = info.get("run_config") or {}
    options = config.get("task_options") or {}
    quadratic = info.get("task") == "quadratic" and options.get("minimizer") == "zero"
    return quadratic and bool(info.get("full_batch"))
