"""Figures that mirror the studies: the registry of figure functions and the code that saves them.

:data:`FIGURES` are drawn for every group of runs; :data:`EXPERIMENT_FIGURES` adds, per experiment
(run.json ``experiment``), the layout of its paper's figure, first; an experiment figure with the name of
a common one replaces it (e.g. random_scaling's per-optimizer panels replace the one-axis overlay).
Figure functions take ``runs`` as :data:`~optprobe.report.figures_base.Runs` and return a Figure or None;
the machinery is in :mod:`~optprobe.report.figures_base`, the layouts in ``figures_<topic>.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from optprobe.report import figures_common as common
from optprobe.report import figures_curvature as curvature
from optprobe.report import figures_tran as tran
from optprobe.report import figures_xie_orabona as xie_orabona
from optprobe.report.figures_base import DPI, PANEL_SIZE, SEED_BAND, FigureFn, Runs, seed_band, seed_groups

__all__ = [
    "DPI",
    "EXPERIMENT_FIGURES",
    "FIGURES",
    "PANEL_SIZE",
    "SEED_BAND",
    "figure_functions",
    "make_figures",
    "save_figure",
    "seed_band",
    "seed_groups",
]

#: Every common figure, in report order.
FIGURES: dict[str, FigureFn] = {
    "full_loss": common.full_loss,
    "optimality_gap": common.optimality_gap,
    "convexity_gaps": common.convexity_gaps,
    "convexity_ratio": common.convexity_ratio,
    "smoothness": common.smoothness,
    "sharpness": common.sharpness,
    "spectral_density": curvature.spectral_density,
    "update_correlation": common.update_correlation,
    "random_scaling": common.random_scaling,
    "norms": common.norms,
    "r_med": common.r_med,
}

#: Per experiment, the figures laid out as its paper lays them out (drawn before the common ones).
EXPERIMENT_FIGURES: dict[str, dict[str, FigureFn]] = {
    "random_scaling": {"random_scaling": tran.random_scaling_per_optimizer},
    "update_correlation": {"update_correlation": tran.update_correlation_per_run},
    "convexity_ratio": {"convexity_ratio": tran.convexity_ratio_per_reference},
    "rotation": {
        "optimality_gap": xie_orabona.rotation_loss,  # the loss is the gap there (x* = 0), per optimizer
        "rotation_geometry": xie_orabona.rotation_geometry,
    },
    "scale_freeness": {
        "scale_free_quadratic": xie_orabona.scale_free_quadratic,
        "scale_free_resnet": xie_orabona.scale_free_resnet,
    },
    "relaxed_smoothness": {"relaxed_smoothness": curvature.relaxed_smoothness_scatter},
    "diagonal_uniformity": {"r_med": curvature.r_med_at_loss_levels},
}


def figure_functions(experiment: str | None = None) -> dict[str, FigureFn]:
    """The figures of ``experiment`` in report order: its own first, then the common ones it does not
    replace."""
    own = EXPERIMENT_FIGURES.get(experiment or "", {})
    return own | {name: fn for name, fn in FIGURES.items() if name not in own}


def save_figure(fig: Figure, out_dir: str | os.PathLike[str], name: str) -> Path:
    """Write ``name.png`` and ``name.pdf`` into ``out_dir``, close the figure; returns the PNG path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / f"{name}.png", dpi=DPI, bbox_inches="tight")  # keeps the outside legends
    fig.savefig(out / f"{name}.pdf", bbox_inches="tight")
    plt.close(fig)
    return out / f"{name}.png"


def make_figures(
    runs: Runs, out_dir: str | os.PathLike[str], prefix: str = "", experiment: str | None = None
) -> dict[str, Path]:
    """Every figure of :func:`figure_functions` that has data, saved as ``<prefix><name>.png|pdf``;
    name → PNG."""
    saved = {}
    for name, make in figure_functions(experiment).items():
        fig = make(runs)
        if fig is not None:
            saved[name] = save_figure(fig, out_dir, f"{prefix}{name}")
    return saved
