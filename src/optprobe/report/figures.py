"""Figures that mirror the studies, one function per figure; runs of one experiment overlay.

Every figure function takes ``runs``, a sequence of ``(label, table)`` or ``(label, table, info)``
(info: the run.json dict), and returns a matplotlib Figure, or ``None`` when no run has any of its
columns. Runs sharing a label are the seeds of one run: they are drawn as one curve, the mean across
seeds at each step, with a shaded band from the minimum to the maximum over seeds (:data:`SEED_BAND`).
With one run, colours tell the quantities apart; with several, colours tell the runs apart and line
styles the quantities. Legends sit outside the axes, on the right. Axes switch to log (positive data)
or symlog (signed data) when the values span more than two decades.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from optprobe.report.verdicts import layer_values, series  # noqa: E402

Runs = Sequence[tuple[str, pd.DataFrame] | tuple[str, pd.DataFrame, Mapping[str, Any]]]
FigureFn = Callable[[Runs], "Figure | None"]

#: How seeds are drawn (the report adds it to the caption of every figure with seeds).
SEED_BAND = (
    "Runs that differ only by seed are one curve: the mean across seeds, with a shaded band from the "
    "minimum to the maximum over seeds (bars: mean, whiskers min–max)."
)

#: Ratio of largest to smallest |value| beyond which an axis goes log/symlog.
DECADES_FOR_LOG = 100.0
PANEL_SIZE = (6.8, 3.0)
#: PNG resolution: a figure (one column of panels, legend on the right) is ≤ ~1280 px wide, unscaled.
DPI = 130
_THIN = {"lw": 0.6, "alpha": 0.35}


@dataclass(frozen=True)
class Curve:
    """A column to draw (``prefix=True``: every column starting with it, e.g. the EMA family)."""

    column: str
    label: str
    style: Mapping[str, Any] = field(default_factory=dict)
    prefix: bool = False
    transform: Callable[[pd.Series], pd.Series] | None = None
    full_batch_only: bool = False  # not drawn for a run whose run.json says full_batch = false

    def columns(self, table: pd.DataFrame) -> list[str]:
        if not self.prefix:
            return [self.column] if self.column in table.columns else []
        return sorted(c for c in table.columns if c.startswith(self.column) and "/" not in c)

    def legend(self, column: str) -> str:
        return f"{self.label} (β={column[len(self.column) :]})" if self.prefix else self.label


@dataclass(frozen=True)
class Panel:
    """One axes: its title, y label (with the math symbol), curves and reference lines."""

    title: str
    ylabel: str
    curves: tuple[Curve, ...]
    hlines: tuple[tuple[float, str], ...] = ()
    height: float = 1.0


def _running_mean(s: pd.Series) -> pd.Series:
    return s.expanding().mean()


def _edge(lr: pd.Series) -> pd.Series:
    return 2.0 / lr[lr > 0]


@dataclass(frozen=True)
class Group:
    """The seeds of one run: its label, and each seed's table and run.json."""

    label: str
    tables: tuple[pd.DataFrame, ...]
    infos: tuple[Mapping[str, Any], ...]

    @property
    def full_batch(self) -> bool:
        """False when some seed's run.json says it was not full-batch GD (unknown counts as full batch)."""
        return all(info.get("full_batch") is not False for info in self.infos)


def seed_groups(runs: Runs) -> list[Group]:
    """``runs`` grouped by label (the seeds of one run), in first-seen order."""
    groups: dict[str, tuple[list[pd.DataFrame], list[Mapping[str, Any]]]] = {}
    for run in runs:
        label, table, info = run[0], run[1], (run[2] if len(run) > 2 else {})  # type: ignore[misc]
        tables, infos = groups.setdefault(label, ([], []))
        tables.append(table)
        infos.append(info or {})
    return [Group(label, tuple(t), tuple(i)) for label, (t, i) in groups.items()]


def seed_band(per_seed: Sequence[pd.Series]) -> tuple[pd.Series, pd.Series, pd.Series]:
    """(mean, min, max) across seeds at each step (steps some seeds lack use the seeds that have them)."""
    unique = [s[~s.index.duplicated(keep="last")] for s in per_seed]
    frame = pd.concat(unique, axis=1).sort_index()
    return frame.mean(axis=1), frame.min(axis=1), frame.max(axis=1)


def _figure(runs: Runs, title: str, subject: str, panels: Sequence[Panel]) -> Figure | None:
    """The panels some run has data for, stacked on a shared step axis; None when no run has ``subject``."""
    groups = seed_groups(runs)
    tables = [t for g in groups for t in g.tables]
    if not any(not series(t, subject).empty for t in tables):
        return None
    drawn = [p for p in panels if any(c.columns(t) for c in p.curves for t in tables)]
    heights = [p.height for p in drawn]
    fig, axes = plt.subplots(
        len(drawn),
        1,
        figsize=(PANEL_SIZE[0], PANEL_SIZE[1] * sum(heights) + 0.7),
        sharex=True,
        squeeze=False,
        gridspec_kw={"height_ratios": heights},
    )
    seeds = [_draw_panel(ax, groups, panel) for ax, panel in zip(axes.flat, drawn, strict=False)]
    axes[-1, 0].set_xlabel("step t")
    fig.suptitle(title, fontsize=13, fontweight="bold")
    fig.tight_layout()  # before the legends, so that they do not squeeze the axes
    for ax, n in zip(axes.flat, seeds, strict=False):
        _legend(ax, n)
    return fig


def _legend(ax: Axes, seeds: int) -> None:
    """The legend outside the data, right of the axes (figures are saved with bbox "tight" to keep it)."""
    if not ax.get_legend_handles_labels()[0]:
        return
    title = f"mean of {seeds} seeds, band min–max" if seeds > 1 else None
    place = {"loc": "upper left", "bbox_to_anchor": (1.01, 1.0), "borderaxespad": 0.0}
    ax.legend(fontsize=8, title=title, title_fontsize=8, **place)


def _draw_panel(ax: Axes, groups: Sequence[Group], panel: Panel) -> int:
    """Draw the panel's curves for every group; returns the most seeds a curve averages."""
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    plotted: list[np.ndarray] = []
    k, seeds = 0, 1
    for i, group in enumerate(groups):
        for curve in panel.curves:
            if curve.full_batch_only and not group.full_batch:
                continue
            columns = dict.fromkeys(c for t in group.tables for c in curve.columns(t))
            for column in columns:
                per_seed = [_values(t, column, curve) for t in group.tables]
                per_seed = [v for v in per_seed if not v.empty]
                if not per_seed:
                    continue
                colour = colours[(k if len(groups) == 1 else i) % len(colours)]
                label = curve.legend(column) if len(groups) == 1 else f"{group.label}: {curve.legend(column)}"
                plotted.append(_plot(ax, per_seed, colour, label, curve.style))
                k, seeds = k + 1, max(seeds, len(per_seed))
    for y, label in panel.hlines:
        ax.axhline(y, color="0.3", lw=0.9, ls=":", label=label)
    if plotted:
        _auto_scale(ax, np.concatenate(plotted))
    else:
        ax.text(0.5, 0.5, "not measured", ha="center", va="center", transform=ax.transAxes, color="0.5")
    ax.set_title(panel.title, fontsize=10.5)
    ax.set_ylabel(panel.ylabel)
    ax.grid(alpha=0.3)
    return seeds


def _values(table: pd.DataFrame, column: str, curve: Curve) -> pd.Series:
    values = series(table, column)
    return curve.transform(values) if curve.transform is not None and not values.empty else values


def _plot(
    ax: Axes, per_seed: Sequence[pd.Series], colour: str, label: str, style: Mapping[str, Any]
) -> np.ndarray:
    """One curve: the series itself, or for several seeds their mean with a min–max band."""
    if len(per_seed) == 1:
        mean, low, high = per_seed[0], None, None
    else:
        mean, low, high = seed_band(per_seed)
    line = {"lw": 1.4, "marker": "o" if len(mean) < 30 else None, "ms": 3, **style}
    ax.plot(mean.index, mean.to_numpy(), color=colour, label=label, **line)
    if low is None or high is None:
        return mean.to_numpy()
    alpha = 0.12 if float(style.get("alpha", 1.0)) < 1 else 0.22
    ax.fill_between(mean.index, low.to_numpy(), high.to_numpy(), color=colour, alpha=alpha, lw=0)
    return np.concatenate([low.to_numpy(), high.to_numpy()])


def _auto_scale(ax: Axes, values: np.ndarray) -> None:
    """log for positive data spanning decades, symlog for signed ones, linear otherwise."""
    nonzero = np.abs(values[np.isfinite(values) & (values != 0)])
    if nonzero.size == 0:
        return
    small = float(np.percentile(nonzero, 5))
    if nonzero.max() / small < DECADES_FOR_LOG:
        return
    if (values[np.isfinite(values)] > 0).all():
        ax.set_yscale("log")
    else:
        ax.set_yscale("symlog", linthresh=10.0 ** np.floor(np.log10(np.percentile(nonzero, 20))))


# ------------------------------------------------------------------------------------ figures
def convexity_gaps(runs: Runs) -> Figure | None:
    """Convexity gaps against x_{t−1} (and x* when measured): instantaneous, window average, EMA."""
    return _figure(
        runs,
        "Convexity gaps along the path (≤ 0: convex)",
        "inst_gap_prev",
        [
            Panel(
                f"against {point}",
                f"gap(x_t, {point})",
                (
                    Curve(f"inst_gap_{suffix}", "inst_gap", _THIN),
                    Curve(f"avg_gap_{suffix}", "avg_gap (window)", {"lw": 1.6}),
                    Curve(f"exp_gap_{suffix}_", "exp_gap", {"lw": 1.6, "ls": "--"}, prefix=True),
                ),
                ((0.0, "0"),),
            )
            for suffix, point in (("prev", "x_{t−1}"), ("ref", "x*"))
        ],
    )


def convexity_ratio(runs: Runs) -> Figure | None:
    """Convexity ratio against x* (1: convex inequality, 0) and the PL ratio ½‖∇F‖²/(F − F*)."""
    return _figure(
        runs,
        "Convexity against the reference x*",
        "convexity_ratio",
        [
            Panel(
                "Σ⟨∇F(x_i), x_i − x*⟩ / Σ(F(x_i) − F(x*))",
                "convexity ratio",
                (Curve("convexity_ratio", "convexity ratio"),),
                ((1.0, "1 (convex)"), (0.0, "0")),
            ),
            Panel("PL ratio", "½‖∇F‖² / (F − F*)", (Curve("pl_ratio", "PL ratio"),)),
        ],
    )


def smoothness(runs: Runs) -> Figure | None:
    """Smoothness along the path (inst/max/EMA against x_{t−1}) with the learning-rate schedule."""
    return _figure(
        runs,
        "Smoothness along the path",
        "inst_smooth_prev",
        [
            Panel(
                "‖∇ℓ(x_t) − ∇ℓ(x_{t−1})‖ / ‖x_t − x_{t−1}‖",
                "L̂_t",
                (
                    Curve("inst_smooth_prev", "inst_smooth", _THIN),
                    Curve("max_smooth_prev", "max_smooth", {"lw": 1.6}),
                    Curve("exp_smooth_prev_", "exp_smooth", {"lw": 1.6, "ls": "--"}, prefix=True),
                ),
            ),
            Panel("learning rate", "η_t", (Curve("lr", "η"),), height=0.45),
        ],
    )


def sharpness(runs: Runs) -> Figure | None:
    """Sharpness λ_max(∇²F) against 2/η (edge of stability) and the path smoothness estimates."""
    return _figure(
        runs,
        "Sharpness and the edge of stability",
        "sharpness",
        [
            Panel(
                "λ_max(∇²F) vs 2/η and smoothness along the path",
                "curvature",
                (
                    Curve("sharpness", "sharpness λ_max", {"lw": 1.8, "marker": "o"}),
                    Curve("lr", "2/η", {"ls": ":", "lw": 1.4}, transform=_edge, full_batch_only=True),
                    Curve("max_smooth_prev", "max_smooth", {"ls": "--", "lw": 1.0}),
                    Curve("exp_smooth_prev_", "exp_smooth", {"ls": "-.", "lw": 1.0}, prefix=True),
                ),
            )
        ],
    )


def update_correlation(runs: Runs) -> Figure | None:
    """⟨g_t, Δ_t⟩ per step and its running mean (< 0 on average: descent-lemma analyses apply)."""
    return _figure(
        runs,
        "Update correlation ⟨g_t, Δ_t⟩ (< 0: descent direction)",
        "update_corr",
        [
            Panel(
                "raw and running mean",
                "⟨g_t, x_t − x_{t−1}⟩",
                (
                    Curve("update_corr", "update_corr", _THIN),
                    Curve("update_corr", "running mean", {"lw": 1.8}, transform=_running_mean),
                ),
                ((0.0, "0"),),
            )
        ],
    )


def random_scaling(runs: Runs) -> Figure | None:
    """Cumulative Σ⟨g, Δ⟩, Σ⟨g, Δ/s⟩ and Σ loss change (random scaling: the last two agree)."""
    return _figure(
        runs,
        "Cumulative progress: update correlation vs loss change",
        "cum_loss_diff",
        [
            Panel(
                "cumulative sums over measured steps",
                "Σ_t",
                (
                    Curve("cum_update_corr", "Σ⟨g_t, Δ_t⟩", {"lw": 1.4, "ls": "--"}),
                    Curve("cum_update_corr_rs", "Σ⟨g_t, Δ_t/s_t⟩", {"lw": 1.8}),
                    Curve("cum_loss_diff", "Σ(ℓ(x_t) − ℓ(x_{t−1}))", {"lw": 1.4, "ls": ":"}),
                ),
                ((0.0, "0"),),
            )
        ],
    )


def norms(runs: Runs) -> Figure | None:
    """Gradient norms (minibatch and full), gradient noise, ℓ1 gradient norm and parameter norm."""
    return _figure(
        runs,
        "Gradient, noise and parameter norms",
        "grad_norm",
        [
            Panel(
                "gradient norm",
                "‖g_t‖₂, ‖∇F(x_t)‖₂",
                (Curve("grad_norm", "‖g_t‖₂", _THIN), Curve("full_grad_norm", "‖∇F‖₂", {"lw": 1.8})),
            ),
            Panel("gradient noise", "‖g_t − ∇F(x_t)‖₂", (Curve("grad_std", "grad_std"),)),
            Panel("ℓ1 gradient norm", "‖g_t‖₁", (Curve("grad_l1", "‖g_t‖₁", _THIN),)),
            Panel("parameter norm", "‖x_t‖₂", (Curve("param_norm", "‖x_t‖₂"),)),
        ],
    )


def full_loss(runs: Runs) -> Figure | None:
    """Full-batch loss F(x_t), the minibatch loss ℓ(x_t, z_t) and the reference F(x*)."""
    return _figure(
        runs,
        "Training loss",
        "loss",
        [
            Panel(
                "full-batch and minibatch loss",
                "loss",
                (
                    Curve("loss", "ℓ(x_t, z_t)", _THIN),
                    Curve("full_loss", "F(x_t)", {"lw": 1.8}),
                    Curve("ref_full_loss", "F(x*)", {"lw": 1.0, "ls": ":"}),
                ),
            )
        ],
    )


def r_med(runs: Runs) -> Figure | None:
    """R_med = max|H_ii| / median|H_ii| per layer (last measurement), one bar per run."""
    groups = seed_groups(runs)
    values = {g.label: pd.DataFrame([layer_values(t, "r_med") for t in g.tables]) for g in groups}
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
            whiskers = np.vstack([mean - frame.min().to_numpy(), frame.max().to_numpy() - mean])
        ax.bar(x + (i - (len(groups) - 1) / 2) * width, mean, width, yerr=whiskers, capsize=2, label=label)
    ax.set_xticks(x, layers, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("R_med = max|H_ii| / median|H_ii|")
    _auto_scale(ax, np.concatenate([frame.to_numpy().ravel() for frame in values.values()]))
    ax.set_title("Uniformity of the Hessian diagonal per layer (lower = more uniform)", fontweight="bold")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    _legend(ax, max(len(frame) for frame in values.values()))
    return fig


#: Every figure, in report order.
FIGURES: dict[str, FigureFn] = {
    "full_loss": full_loss,
    "convexity_gaps": convexity_gaps,
    "convexity_ratio": convexity_ratio,
    "smoothness": smoothness,
    "sharpness": sharpness,
    "update_correlation": update_correlation,
    "random_scaling": random_scaling,
    "norms": norms,
    "r_med": r_med,
}


def save_figure(fig: Figure, out_dir: str | os.PathLike[str], name: str) -> Path:
    """Write ``name.png`` and ``name.pdf`` into ``out_dir``, close the figure; returns the PNG path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / f"{name}.png", dpi=DPI, bbox_inches="tight")  # keeps the outside legends
    fig.savefig(out / f"{name}.pdf", bbox_inches="tight")
    plt.close(fig)
    return out / f"{name}.png"


def make_figures(runs: Runs, out_dir: str | os.PathLike[str], prefix: str = "") -> dict[str, Path]:
    """Every figure in :data:`FIGURES` that has data, saved as ``<prefix><name>.png|pdf``; name → PNG."""
    saved = {}
    for name, make in FIGURES.items():
        fig = make(runs)
        if fig is not None:
            saved[name] = save_figure(fig, out_dir, f"{prefix}{name}")
    return saved
