"""The drawing machinery the figure modules share: runs grouped by seed, panels of curves with seed bands,
grids of panels, outside legends, automatic log axes, and math text.

Every figure function takes ``runs``, a sequence of ``(label, table)`` or ``(label, table, info)``
(info: the run.json dict), and returns a matplotlib Figure, or ``None`` when no run has its data. Runs
sharing a label are the seeds of one run: one curve, the mean across seeds at each step, with a shaded
band from the minimum to the maximum over seeds (:data:`SEED_BAND`). Labels and titles may write
subscripts as ``x_{t−1}``: they are drawn as mathtext (:func:`~optprobe.report.notation.mpl_math`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from optprobe.errors import OptprobeError  # noqa: E402
from optprobe.metrics.registry import declared_columns  # noqa: E402
from optprobe.report.notation import mpl_math  # noqa: E402
from optprobe.report.verdicts import series  # noqa: E402
from optprobe.sinks.names import TRAINING_COLUMNS  # noqa: E402

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
#: Size of one panel in a grid of panels (at most GRID_COLUMNS side by side).
GRID_PANEL = (4.6, 3.2)
GRID_COLUMNS = 3
#: PNG resolution: a figure (one column of panels, legend on the right) is ≤ ~1280 px wide, unscaled.
DPI = 130
THIN = {"lw": 0.6, "alpha": 0.35}
COLOURS = plt.rcParams["axes.prop_cycle"].by_key()["color"]


@dataclass(frozen=True)
class Curve:
    """A column to draw (``prefix=True``: every column starting with it, e.g. the EMA family).

    ``bias_correct``: the column is an EMA ``exp_<name>_<β>`` started at 0 and restarted at each epoch
    end; it is drawn divided by 1 − β^k (:func:`bias_corrected_ema`).
    """

    column: str
    label: str
    style: Mapping[str, Any] = field(default_factory=dict)
    prefix: bool = False
    transform: Callable[[pd.Series], pd.Series] | None = None
    full_batch_only: bool = False  # not drawn for a run whose run.json says full_batch = false
    bias_correct: bool = False

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
    log: bool = False  # log y whatever the range (positive data)


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

    @property
    def info(self) -> Mapping[str, Any]:
        """The first seed's run.json (settings other than the seed are shared)."""
        return self.infos[0] if self.infos else {}

    def per_seed(self, column: str, curve: Curve | None = None) -> list[pd.Series]:
        """The column's finite values by step, per seed (seeds without it left out)."""
        curve = curve or Curve(column, column)
        values = [_values(t, i, column, curve) for t, i in zip(self.tables, self.infos, strict=True)]
        return [v for v in values if not v.empty]


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


def bias_corrected_ema(table: pd.DataFrame, info: Mapping[str, Any], column: str) -> pd.Series:
    """EMA ``exp_<name>_<β>`` divided by 1 − β^k, k = finite values of ``inst_<name>`` since its restart.

    The probe's EMA starts at e = 0 and, with window = "epoch" (the default), restarts at each epoch end,
    so e_k = (1 − β) Σ_{i≤k} β^{k−i} v_i underestimates the level by the factor 1 − β^k; the corrected
    value is the weighted mean of the window's values. Without the ``inst_`` column, uncorrected.
    """
    stem, _, beta_text = column.rpartition("_")
    source = "inst_" + stem.removeprefix("exp_")
    try:
        beta = float(beta_text)
    except ValueError:
        return series(table, column)
    if source not in table.columns or not stem.startswith("exp_"):
        return series(table, column)
    ordered = table.sort_values("step", kind="stable") if "step" in table.columns else table
    finite = pd.Series(np.isfinite(pd.to_numeric(ordered[source], errors="coerce")), index=ordered.index)
    window = (info.get("probe_config") or {}).get("window", "epoch")
    restarts = ordered["epoch"] if window == "epoch" and "epoch" in ordered.columns else 0
    k = finite.astype(int).groupby(restarts).cumsum() if window == "epoch" else finite.astype(int).cumsum()
    with np.errstate(divide="ignore", invalid="ignore"):
        corrected = pd.to_numeric(ordered[column], errors="coerce") / (1.0 - beta ** k.astype(float))
    corrected[k == 0] = math.nan
    if "step" in ordered.columns:
        corrected.index = ordered["step"].to_numpy()
    return corrected[np.isfinite(corrected)].astype(float)


def _values(table: pd.DataFrame, info: Mapping[str, Any], column: str, curve: Curve) -> pd.Series:
    values = bias_corrected_ema(table, info, column) if curve.bias_correct else series(table, column)
    return curve.transform(values) if curve.transform is not None and not values.empty else values


# ------------------------------------------------------------------------------------ layouts
def column(stem: str, suffix: str = "") -> str:
    """The table column ``<stem>_<suffix>`` (``stem`` alone without a suffix) of a stem that a metric class
    declares (its ``columns``) or the Probe writes (loss, lr, scale); a figure naming any other stem is an
    :class:`OptprobeError` when its module loads, so a renamed metric column cannot leave it empty."""
    if stem not in _declared_stems():
        raise OptprobeError(
            f"a report figure plots {stem!r}, which no metric class declares in its columns "
            f"(declared: {', '.join(sorted(_declared_stems()))})"
        )
    return f"{stem}_{suffix}" if suffix else stem


@functools.cache
def _declared_stems() -> frozenset[str]:
    return frozenset(stem for stem, _ in declared_columns().stems) | frozenset(TRAINING_COLUMNS)


def stacked_figure(runs: Runs, title: str, subject: str, panels: Sequence[Panel]) -> Figure | None:
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
    seeds = [draw_panel(ax, groups, panel) for ax, panel in zip(axes.flat, drawn, strict=False)]
    axes[-1, 0].set_xlabel("step t")
    fig.suptitle(mpl_math(title), fontsize=13, fontweight="bold")
    fig.tight_layout()  # before the legends, so that they do not squeeze the axes
    for ax, n in zip(axes.flat, seeds, strict=False):
        legend(ax, n)
    return fig


def grid(n: int, title: str, columns: int = GRID_COLUMNS, size: tuple[float, float] = GRID_PANEL
         ) -> tuple[Figure, list[Axes]]:  # fmt: skip
    """A figure of ``n`` panels, at most ``columns`` side by side (extra axes hidden); its axes in order."""
    cols = max(1, min(columns, n))
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(size[0] * cols, size[1] * rows + 0.8), squeeze=False)
    flat = list(axes.flat)
    for ax in flat[n:]:
        ax.set_visible(False)
    fig.suptitle(mpl_math(title), fontsize=13, fontweight="bold")
    return fig, flat[:n]


def finish_grid(fig: Figure, axes: Sequence[Axes], seeds: int, xlabel: str = "step t") -> Figure:
    """Label, tighten, and put one legend under the panels (the handles of every panel, once each)."""
    handles: dict[str, Any] = {}
    for ax in axes:
        ax.grid(alpha=0.3)
        if ax.get_xlabel() == "":
            ax.set_xlabel(mpl_math(xlabel))
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    fig.tight_layout(rect=(0, 0.1 if handles else 0, 1, 1))
    if handles:
        title = f"mean of {seeds} seeds, band min–max" if seeds > 1 else None
        place = {"loc": "lower center", "ncol": min(4, len(handles)), "frameon": False, "fontsize": 9}
        fig.legend(handles.values(), list(handles), title=title, title_fontsize=9, **place)
    return fig


def legend(ax: Axes, seeds: int) -> None:
    """The legend outside the data, right of the axes (figures are saved with bbox "tight" to keep it)."""
    if not ax.get_legend_handles_labels()[0]:
        return
    title = f"mean of {seeds} seeds, band min–max" if seeds > 1 else None
    place = {"loc": "upper left", "bbox_to_anchor": (1.01, 1.0), "borderaxespad": 0.0}
    ax.legend(fontsize=8, title=title, title_fontsize=8, **place)


def draw_panel(ax: Axes, groups: Sequence[Group], panel: Panel) -> int:
    """Draw the panel's curves for every group; returns the most seeds a curve averages."""
    plotted: list[np.ndarray] = []
    k, seeds = 0, 1
    for i, group in enumerate(groups):
        for curve in panel.curves:
            if curve.full_batch_only and not group.full_batch:
                continue
            columns = dict.fromkeys(c for t in group.tables for c in curve.columns(t))
            for column in columns:
                per_seed = group.per_seed(column, curve)
                if not per_seed:
                    continue
                colour = COLOURS[(k if len(groups) == 1 else i) % len(COLOURS)]
                label = curve.legend(column) if len(groups) == 1 else f"{group.label}: {curve.legend(column)}"
                plotted.append(plot_band(ax, per_seed, colour, label, curve.style))
                k, seeds = k + 1, max(seeds, len(per_seed))
    for y, label in panel.hlines:
        ax.axhline(y, color="0.3", lw=0.9, ls=":", label=label)
    if plotted and panel.log:
        ax.set_yscale("log")
    elif plotted:
        auto_scale(ax, np.concatenate(plotted))
    else:
        ax.text(0.5, 0.5, "not measured", ha="center", va="center", transform=ax.transAxes, color="0.5")
    ax.set_title(mpl_math(panel.title), fontsize=10.5)
    ax.set_ylabel(mpl_math(panel.ylabel))
    ax.grid(alpha=0.3)
    return seeds


def plot_band(
    ax: Axes, per_seed: Sequence[pd.Series], colour: str, label: str, style: Mapping[str, Any]
) -> np.ndarray:
    """One curve: the series itself, or for several seeds their mean with a min–max band; its values."""
    if len(per_seed) == 1:
        mean, low, high = per_seed[0], None, None
    else:
        mean, low, high = seed_band(per_seed)
    line = {"lw": 1.4, "marker": "o" if len(mean) < 30 else None, "ms": 3, **style}
    ax.plot(mean.index, mean.to_numpy(), color=colour, label=mpl_math(label), **line)
    if low is None or high is None:
        return mean.to_numpy()
    alpha = 0.12 if float(style.get("alpha", 1.0)) < 1 else 0.22
    ax.fill_between(mean.index, low.to_numpy(), high.to_numpy(), color=colour, alpha=alpha, lw=0)
    return np.concatenate([low.to_numpy(), high.to_numpy()])


def auto_scale(ax: Axes, values: np.ndarray, axis: str = "y") -> None:
    """log for positive data spanning decades, symlog for signed ones, linear otherwise."""
    values = np.asarray(values, float)
    nonzero = np.abs(values[np.isfinite(values) & (values != 0)])
    if nonzero.size == 0:
        return
    small = float(np.percentile(nonzero, 5))
    if nonzero.max() / small < DECADES_FOR_LOG:
        return
    set_scale = ax.set_yscale if axis == "y" else ax.set_xscale
    if (values[np.isfinite(values)] > 0).all():
        set_scale("log")
    else:
        set_scale("symlog", linthresh=10.0 ** np.floor(np.log10(np.percentile(nonzero, 20))))


def base_label(label: str, suffixes: Sequence[str]) -> tuple[str, str]:
    """(label without the first matching suffix, that suffix or "")."""
    for suffix in suffixes:
        if label.endswith(suffix) and len(label) > len(suffix):
            return label[: -len(suffix)], suffix
    return label, ""


def families(groups: Sequence[Group], suffixes: Sequence[str]) -> dict[str, dict[str, Group]]:
    """Groups by base label (e.g. ``sgdm`` and ``sgdm_rs``): base → {suffix ("" for the plain run): group}."""
    out: dict[str, dict[str, Group]] = {}
    for group in groups:
        base, suffix = base_label(group.label, suffixes)
        out.setdefault(base, {})[suffix] = group
    return out
