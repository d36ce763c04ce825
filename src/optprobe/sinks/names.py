"""Stable, namespaced metric names for trackers: ``optprobe/<family>/<column>``.

``inst_gap_prev`` → ``optprobe/convexity/inst_gap_prev``; per-layer columns go under ``layers/``,
``inst_smooth_prev/fc1`` → ``optprobe/smoothness/layers/inst_smooth_prev/fc1`` (so that no name is
both a metric and a folder of metrics, which file-based stores such as MLflow's cannot hold).
Bookkeeping columns (step, epoch, event) are not metrics.
"""

from __future__ import annotations

import math
from typing import Any

NOT_METRICS = frozenset({"step", "epoch", "event"})
#: the Probe step of a row, as trackers whose own step counter is shared with the trainer log it
STEP_TAG = "optprobe/step"
_FAMILIES = (  # first matching prefix wins
    ("convexity", ("inst_gap", "avg_gap", "exp_gap")),
    ("smoothness", ("inst_smooth", "max_smooth", "exp_smooth")),
    ("correlation", ("update_corr", "loss_diff", "cum_")),
    ("norms", ("grad_norm", "grad_l1", "grad_linf", "param_norm", "update_norm")),
    ("fullbatch", ("full_", "grad_std", "convexity_ratio", "pl_ratio", "ref_full_loss")),
    ("curvature", ("sharpness", "spectral_norm", "hessian_", "r_med", "diag_dominance", "blockwise_",
                   "effective_rank", "singular_")),
)  # fmt: skip


def family(column: str) -> str:
    """The metric family of a table column ("train" for loss, lr and scale; "other" if unknown)."""
    for name, prefixes in _FAMILIES:
        if column.startswith(prefixes):
            return name
    return "train" if column in ("loss", "lr", "scale") else "other"


def tag(column: str) -> str:
    metric, _, layer = column.partition("/")
    return (
        f"optprobe/{family(metric)}/layers/{metric}/{layer}"
        if layer
        else f"optprobe/{family(metric)}/{metric}"
    )


def tracked_scalars(row: dict[str, Any]) -> dict[str, float]:
    """``{tag: value}`` for the finite numeric metrics of a row (NaN means "not measured": skipped)."""
    out = {}
    for column, value in row.items():
        if column in NOT_METRICS or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if math.isfinite(value):
            out[tag(column)] = float(value)
    return out
