"""Layouts of the curvature findings: local smoothness against the gradient norm with the fitted (L0, L1)
envelope (Orabona; Zhang et al.), R_med per layer at equal training loss (Jiang et al. compare Adam and
SGD+M at equal loss, not at equal step), and the Hessian's eigenvalue density along training."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from optprobe.curvature.relaxed import relaxed_smoothness
from optprobe.report.figures_base import (
    COLOURS,
    Group,
    Runs,
    auto_scale,
    column,
    finish_grid,
    grid,
    seed_groups,
)
from optprobe.report.notation import mpl_math
from optprobe.report.verdicts import MIN_POINTS, relaxed_pairs


def _pairs(group: Group) -> pd.DataFrame:
    """(g, L) rows of every seed, from the columns the report card's check fits (``relaxed_pairs``)."""
    frames = [relaxed_pairs(table) for table in group.tables]
    named = [f.set_axis(["g", "L"], axis=1).assign(source=f.columns[1]) for f in frames]
    return pd.concat(named) if named else pd.DataFrame(columns=["g", "L", "source"])


def relaxed_smoothness_scatter(runs: Runs) -> Figure | None:
    """Per run, local smoothness L̂_t against the gradient norm (every seed's points; the columns of
    ``relaxed_pairs``: F's secant smoothness against ‖∇F‖ at the previous measurement when measured), the
    envelope L0 + L1‖∇F‖ fitted to them (curvature/relaxed.py) and the constant L = max L̂_t; a log
    x-axis when ‖∇F‖ spans decades."""
    groups = [(g, p) for g in seed_groups(runs) if len(p := _pairs(g)) >= MIN_POINTS]
    if not groups:
        return None
    fig, axes = grid(len(groups), "Local smoothness against gradient norm: the (L0, L1) envelope")
    for ax, (group, pairs) in zip(axes, groups, strict=True):
        g, s = pairs["g"].to_numpy(float), pairs["L"].to_numpy(float)
        fit = relaxed_smoothness(g, s)
        ax.scatter(g, s, s=9, alpha=0.45, color=COLOURS[0], label="L̂_t (every seed)")
        grid_g = np.linspace(g.min(), g.max(), 200)
        if g.max() > 0 and g.min() > 0 and g.max() / g.min() >= 100:
            grid_g = np.geomspace(g.min(), g.max(), 200)
        ax.plot(grid_g, fit.l0 + fit.l1 * grid_g, color=COLOURS[1], lw=1.8, label="fit L0 + L1‖∇F‖")
        ax.axhline(float(s.max()), color="0.3", lw=1.0, ls="--", label="constant L = max L̂_t")
        auto_scale(ax, g, axis="x")
        secant = (pairs["source"] == "full_smooth").all()
        full = group.per_seed(column("full_grad_norm"))
        name = "‖∇F(x_s)‖, s the previous measurement" if secant else "‖∇F(x_t)‖" if full else "‖g_t‖"
        ax.set_xlabel(mpl_math(name))
        ax.set_ylabel(mpl_math("L̂_t of F (secant)" if secant else "L̂_t (minibatch, or mixed seeds)"))
        ax.set_title(f"{group.label}: L0 = {fit.l0:.3g}, L1 = {fit.l1:.3g}", fontsize=10)
    return finish_grid(fig, axes, 1)


#: DiagonalGeometry's columns: R_med per layer (``r_med/<layer>``), its bootstrap interval, the loss level
R_MED, R_MED_LOW, R_MED_HIGH, R_MED_LEVEL = (column("r_med", part) for part in ("", "low", "high", "level"))


def _by_level(table: pd.DataFrame) -> pd.DataFrame:
    """Rows where R_med was measured at a loss level, indexed by ``r_med_level`` (first crossing only)."""
    if R_MED_LEVEL not in table.columns:
        return pd.DataFrame()
    levels = pd.to_numeric(table[R_MED_LEVEL], errors="coerce")
    return table[np.isfinite(levels)].drop_duplicates(R_MED_LEVEL).set_index(R_MED_LEVEL).sort_index()


def r_med_at_loss_levels(runs: Runs) -> Figure | None:
    """Per layer, R_med = max|H_ii| / median|H_ii| at the curvature-batch loss levels (r_med_level, lower
    loss to the right), one line per optimizer: the mean across seeds with min–max whiskers (one seed: its
    bootstrap 95% interval over the sampled coordinates), as Jiang et al. compare Adam and SGD+M at equal
    loss."""
    groups = [(g, [_by_level(t) for t in g.tables]) for g in seed_groups(runs)]
    groups = [(g, f) for g, f in groups if any(len(x) for x in f)]
    layers = list(dict.fromkeys(c.split("/", 1)[1] for _, f in groups for x in f for c in x.columns
                                if c.startswith(f"{R_MED}/")))  # fmt: skip
    if not layers:
        return None
    fig, axes = grid(len(layers), "R_med per layer at equal training loss (Jiang et al.)")
    seeds = 1
    for ax, layer in zip(axes, layers, strict=True):
        values = []
        for i, (group, frames) in enumerate(groups):
            per_seed = [f[f"{R_MED}/{layer}"].dropna() for f in frames if f"{R_MED}/{layer}" in f.columns]
            per_seed = [s for s in per_seed if len(s)]
            if not per_seed:
                continue
            frame = pd.concat(per_seed, axis=1)
            mean = frame.mean(axis=1)
            if len(per_seed) > 1:
                low, high = frame.min(axis=1), frame.max(axis=1)
            else:
                one = frames[0]
                low, high = one.get(f"{R_MED_LOW}/{layer}", mean), one.get(f"{R_MED_HIGH}/{layer}", mean)
            colour = COLOURS[i % len(COLOURS)]
            low, high = low.reindex(mean.index).to_numpy(float), high.reindex(mean.index).to_numpy(float)
            whiskers = np.vstack([mean.to_numpy() - low, high - mean.to_numpy()]).clip(min=0)
            ax.errorbar(mean.index, mean.to_numpy(), yerr=whiskers, fmt="o-", color=colour, lw=1.6, ms=4,
                        capsize=3, label=group.label)  # fmt: skip
            values += [mean.to_numpy(), high]
            seeds = max(seeds, len(per_seed))
        ax.invert_xaxis()  # training lowers the loss: later measurements to the right
        auto_scale(ax, np.concatenate(values) if values else np.array([]))
        ax.set_title(layer, fontsize=10.5)
        ax.set_xlabel("curvature-batch loss level")
        ax.set_ylabel(mpl_math("R_med"))
    return finish_grid(fig, axes, seeds, xlabel="curvature-batch loss level")


def _density_rows(table: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The rows of ``table`` with a binned spectral density and its ``density_bin<j>`` columns in order."""
    bins = sorted((c for c in table.columns if c.startswith("density_bin")), key=lambda c: int(c[11:]))
    if not bins or "density_lo" not in table.columns:
        return pd.DataFrame(), []
    rows = table[np.isfinite(pd.to_numeric(table["density_lo"], errors="coerce"))]
    return rows, bins


def spectral_density(runs: Runs, most: int = 4) -> Figure | None:
    """Per run, the Hessian's eigenvalue density φ(λ) by stochastic Lanczos quadrature (the run table's
    ``density_bin<j>`` columns, metric ``spectral_density``) at up to ``most`` measured steps, first to last,
    of its first seed with a density, on a log scale as PyHessian plots it; the title gives the negative
    mass ∫_{λ<0} φ at the last one."""
    panels = []
    for group in seed_groups(runs):
        for table in group.tables:
            rows, bins = _density_rows(table)
            if len(rows):
                panels.append((group, rows, bins))
                break
    if not panels:
        return None
    fig, axes = grid(len(panels), "Hessian eigenvalue density (stochastic Lanczos quadrature)")
    for ax, (group, rows, bins) in zip(axes, panels, strict=True):
        picked = rows.iloc[np.unique(np.linspace(0, len(rows) - 1, min(most, len(rows))).round().astype(int))]
        shades = plt.get_cmap("viridis")(np.linspace(0.1, 0.85, len(picked)))
        for shade, (_, row) in zip(shades, picked.iterrows(), strict=True):
            values = row[bins].to_numpy(float)
            points = np.linspace(float(row["density_lo"]), float(row["density_hi"]), len(bins))
            floor = 1e-6 * np.nanmax(values) if np.nanmax(values) > 0 else 1e-12
            ax.plot(points, np.maximum(values, floor), color=shade, lw=1.5, label=f"step {int(row['step'])}")
        ax.axvline(0.0, color="0.4", lw=0.8, ls=":")
        ax.set_yscale("log")
        ax.set_xlabel(mpl_math("eigenvalue λ"))
        ax.set_ylabel(mpl_math("density φ(λ)"))
        last = picked.iloc[-1]
        mass = f", negative mass {float(last['negative_mass']):.3f}" if "negative_mass" in last else ""
        ax.set_title(f"{group.label}{mass}", fontsize=10)
        ax.legend(fontsize=8)
    return finish_grid(fig, axes, 1, xlabel="eigenvalue λ")
