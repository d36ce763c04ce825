"""Layouts of Xie et al.'s rotation study (Table 1: loss per optimizer on L(x) and L(Rx); ‖H‖₁,₁ against
‖H‖₂) and of Orabona's scale-freeness slides (‖x_t‖ on f and its preconditioned twin; a ResNet's loss/c on
F and c·F). One panel per optimizer family: the plain run in blue, its twin in orange."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from optprobe.report.figures_base import (
    COLOURS,
    Group,
    Runs,
    column,
    families,
    finish_grid,
    grid,
    legend,
    plot_band,
    seed_groups,
)
from optprobe.report.notation import mpl_math
from optprobe.report.verdicts import series

ROTATED = "_rotated"  # rotation.toml: adam / adam_rotated
TWIN = "_twin"  # scale_freeness.toml: gd / gd_twin (Hessian ΛH, same minimizer)
SCALED = "_x16"  # scale_freeness.toml: adamw / adamw_x16 (loss 16·F)


def _pairs_figure(
    groups: list[Group], suffix: str, names: tuple[str, str], title: str, quantity: str, ylabel: str,
    per_seed: Any = None,
) -> Figure | None:  # fmt: skip
    """One panel per family (label without ``suffix``): the column ``quantity`` of the plain run and of its
    twin, on a log axis when it spans a decade."""
    if not groups:
        return None
    by_base = families(groups, (suffix,))
    fig, axes = grid(len(by_base), title)
    seeds = 1
    for ax, (base, members) in zip(axes, by_base.items(), strict=True):
        for i, (twin, group) in enumerate(sorted(members.items())):
            values = per_seed(group) if per_seed is not None else group.per_seed(quantity)
            if values:
                plot_band(ax, values, COLOURS[i], names[1] if twin else names[0], {"lw": 1.6})
                seeds = max(seeds, len(values))
        _log_when_wide(ax)
        ax.set_title(base, fontsize=11)
        ax.set_ylabel(mpl_math(ylabel))
    return finish_grid(fig, axes, seeds)


def _log_when_wide(ax: Axes) -> None:
    """A log y-axis when the drawn values span a decade or more (a narrower range reads better linear)."""
    low, high = ax.dataLim.y0, ax.dataLim.y1
    if low > 0 and high / low >= 10:
        ax.set_yscale("log")


def rotation_loss(runs: Runs) -> Figure | None:
    """As Table 1 of Xie et al., per optimizer: the loss (here the gap to the optimum, x* = 0; log scale
    when it spans a decade) on L(x) and on the rotated L(Rx); Adam's edge disappears under rotation, SGD's
    loss does not change."""
    groups = [g for g in seed_groups(runs) if g.per_seed(column("loss"))]
    title = "Loss on the quadratic and its rotation (Xie et al., Table 1)"
    return _pairs_figure(groups, ROTATED, ("unrotated L(x)", "rotated L(Rx)"), title, column("loss"), "loss")


def rotation_geometry(runs: Runs) -> Figure | None:
    """‖H‖₁,₁/d (Cauchy probes) against the spectral norm ‖H‖₂ (Lanczos), mean over measurements, per run:
    Adam's advantage needs ‖H‖₁,₁/d < ‖H‖₂ (Theorem 3.11), which a rotation destroys."""
    groups = [g for g in seed_groups(runs) if g.per_seed(column("hessian_l11", "per_dim"))]
    if not groups:
        return None
    fig, axes = grid(1, "‖H‖₁,₁ per dimension against ‖H‖₂, unrotated vs rotated", size=(7.5, 3.6))
    ax = axes[0]
    quantities = ((column("hessian_l11", "per_dim"), "‖H‖₁,₁ / d"), (column("spectral_norm"), "‖H‖₂"))
    x, width = np.arange(len(groups)), 0.38
    for j, (name, label) in enumerate(quantities):
        means = [_mean_per_seed(g, name) for g in groups]
        centre = np.array([np.mean(m) if m else np.nan for m in means])
        spread = np.array([[c - min(m), max(m) - c] if m else [0.0, 0.0]
                           for c, m in zip(centre, means, strict=True)]).clip(min=0.0)  # mean ± 1 ulp
        ax.bar(x + (j - 0.5) * width, centre, width, yerr=spread.T, capsize=2, color=COLOURS[j], label=label)
    ax.set_xticks(x, [g.label for g in groups], rotation=30, ha="right")
    ax.set_yscale("log")
    ax.set_ylabel("norm (log)")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    legend(ax, max(len(g.tables) for g in groups))
    return fig


def _mean_per_seed(group: Group, name: str) -> list[float]:
    """Per seed, the mean of column ``name`` over its measurements (``sharpness`` stands in for a missing
    ``spectral_norm``: λ_max = ‖H‖₂ on a positive semidefinite Hessian)."""
    out = []
    for table in group.tables:
        values = series(table, name)
        if values.empty and name == column("spectral_norm"):
            values = series(table, column("sharpness"))
        if not values.empty:
            out.append(float(values.mean()))
    return out


def scale_free_quadratic(runs: Runs) -> Figure | None:
    """Orabona's slides, per method: ‖x_t‖ (log scale when it spans a decade) on f and on its twin with
    Hessian ΛH and the same minimizer: a scale-free method (Adam, AdaGrad, Lion) draws one curve, GD two."""
    groups = [g for g in seed_groups(runs) if g.info.get("task", "quadratic") == "quadratic"]
    groups = [g for g in groups if g.per_seed(column("param_norm"))]
    return _pairs_figure(groups, TWIN, ("f", "twin (Hessian ΛH, same minimizer)"),
                         "Scale-freeness on a quadratic: ‖x_t‖ on f and its preconditioned twin",
                         column("param_norm"), "‖x_t‖")  # fmt: skip


def scale_free_resnet(runs: Runs) -> Figure | None:
    """Orabona's ResNet without normalization, per optimizer: loss/c on F (c = 1) and on 16·F (c = 16):
    AdamW and AdamProx draw one curve (scale-free), Adam+L2 two."""
    groups = [g for g in seed_groups(runs) if g.info.get("task") not in (None, "quadratic")]
    groups = [g for g in groups if g.per_seed(column("loss"))]

    def per_seed(group: Group) -> list[pd.Series]:
        loss = column("loss")
        scaled = (series(t, loss) / _loss_scale(i) for t, i in zip(group.tables, group.infos, strict=True))
        return [s for s in scaled if not s.empty]

    return _pairs_figure(groups, SCALED, ("F", "16·F (drawn ÷ 16)"),
                         "Scale-freeness on a ResNet without normalization: loss/c on F and c·F",
                         column("loss"), "ℓ(x_t) / c", per_seed)  # fmt: skip


def _loss_scale(info: Mapping[str, Any]) -> float:
    return float(((info.get("run_config") or {}).get("task_options") or {}).get("loss_scale", 1.0))

