"""Layouts of Tran, Zhang & Cutkosky's figures: random scaling per optimizer (Fig. 8), update correlation
per run (Figs. 6–7), the convexity ratio per reference (Sec. 3.2). One panel per optimizer or run, each on
its own y-scale, so that no run's curve is flattened by another's."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from optprobe.report.figures_base import (
    COLOURS,
    THIN,
    Group,
    Runs,
    auto_scale,
    column,
    families,
    finish_grid,
    grid,
    plot_band,
    seed_groups,
)
from optprobe.report.notation import mpl_math

#: Label suffix of the random-scaling twin of a run (random_scaling.toml: ``sgdm`` and ``sgdm_rs``).
RS_SUFFIX = "_rs"
#: (column, quantity, line style) of Fig. 8: Σ update_corr, Σ update_corr with RS, Σ loss_diff.
_CUMULATIVE = (
    (column("cum_update_corr"), "Σ⟨g_t, Δ_t⟩", {"ls": "--", "lw": 1.4}),
    (column("cum_update_corr_rs"), "Σ⟨g_t, Δ_t/s_t⟩", {"ls": "-", "lw": 1.9}),
    (column("cum_loss_diff"), "Σ(ℓ(x_t) − ℓ(x_{t−1}))", {"ls": ":", "lw": 1.6}),
)


def random_scaling_per_optimizer(runs: Runs) -> Figure | None:
    """As Fig. 8 of Tran et al.: per optimizer, cumulative Σ update_corr, Σ update_corr_rs and Σ loss_diff,
    without random scaling (blue) and with it (orange); with RS, Σ⟨g, Δ/s⟩ tracks Σ loss change."""
    groups = [g for g in seed_groups(runs) if g.per_seed(column("cum_loss_diff"))]
    if not groups:
        return None
    by_base = families(groups, (RS_SUFFIX,))
    fig, axes = grid(len(by_base), "Random scaling: cumulative progress per optimizer (Tran et al., Fig. 8)")
    seeds = 1
    for ax, (base, members) in zip(axes, by_base.items(), strict=True):
        values = []
        for i, (suffix, group) in enumerate(sorted(members.items())):
            which = "with RS" if suffix else "without RS"
            for name, quantity, style in _CUMULATIVE:
                if name == column("cum_update_corr_rs") and not suffix:
                    continue  # without RS, update_corr_rs is update_corr itself
                per_seed = group.per_seed(name)
                if per_seed:
                    values.append(plot_band(ax, per_seed, COLOURS[i], f"{which}: {quantity}", style))
                    seeds = max(seeds, len(per_seed))
        ax.axhline(0.0, color="0.3", lw=0.9, ls=":")
        auto_scale(ax, pd.concat([pd.Series(v) for v in values]).to_numpy())
        ax.set_title(base, fontsize=11)
        ax.set_ylabel("cumulative sum")
    return finish_grid(fig, axes, seeds)


def update_correlation_per_run(runs: Runs) -> Figure | None:
    """Per run, ⟨g_t, x_t − x_{t−1}⟩ per step (thin) and its running mean (thick), each panel's y-axis
    fitted to the running mean and 0 (per-step spikes may leave it); < 0 on average: a descent direction."""
    groups = [g for g in seed_groups(runs) if g.per_seed(column("update_corr"))]
    if not groups:
        return None
    fig, axes = grid(len(groups), "Update correlation per run (Tran et al., Figs. 6–7)")
    seeds = 1
    for ax, group in zip(axes, groups, strict=True):
        raw = group.per_seed(column("update_corr"))
        running = [s.expanding().mean() for s in raw]
        plot_band(ax, raw, COLOURS[0], "⟨g_t, Δ_t⟩ per step", THIN)
        values = plot_band(ax, running, COLOURS[0], "running mean", {"lw": 2.0})
        ax.axhline(0.0, color="0.2", lw=1.0, ls="-", label="0")
        _focus(ax, values)
        ax.set_title(_run_title(group), fontsize=10.5)
        ax.set_ylabel(mpl_math("⟨g_t, x_t − x_{t−1}⟩"))
        seeds = max(seeds, len(raw))
    return finish_grid(fig, axes, seeds)


def convexity_ratio_per_reference(runs: Runs) -> Figure | None:
    """Per reference x*, the convexity ratio Σ⟨∇F(x_i), x_i − x*⟩ / Σ(F(x_i) − F(x*)), with lines at 1
    (the convex inequality) and 0."""
    groups = [g for g in seed_groups(runs) if g.per_seed(column("convexity_ratio"))]
    if not groups:
        return None
    fig, axes = grid(len(groups), "Convexity ratio against each reference x*")
    seeds = 1
    for ax, group in zip(axes, groups, strict=True):
        per_seed = group.per_seed(column("convexity_ratio"))
        values = plot_band(ax, per_seed, COLOURS[0], "convexity ratio", {"lw": 1.8})
        ax.axhline(1.0, color="tab:green", lw=1.0, ls="--", label="1 (convex)")
        ax.axhline(0.0, color="0.3", lw=1.0, ls=":", label="0")
        auto_scale(ax, values)
        reference = (group.info.get("run_config") or {}).get("reference") or group.info.get("reference")
        ax.set_title(f"{group.label} (x* = {reference})" if isinstance(reference, str) else group.label)
        ax.set_ylabel("convexity ratio")
        seeds = max(seeds, len(per_seed))
    return finish_grid(fig, axes, seeds)


def _run_title(group: Group) -> str:
    task, optimizer = group.info.get("task"), group.info.get("optimizer")
    return f"{group.label} ({task}, {optimizer})" if task and optimizer else group.label


def _focus(ax: Axes, values: Sequence[float]) -> None:
    """y-limits on the running mean (with the 0 line in view); per-step spikes may leave the panel."""
    series = pd.Series(values).dropna()
    if series.empty:
        return
    low, high = min(float(series.min()), 0.0), max(float(series.max()), 0.0)
    pad = 0.15 * (high - low or abs(high) or 1.0)
    ax.set_ylim(low - pad, high + pad)
