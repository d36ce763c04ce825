"""Stable, namespaced metric names for trackers: ``optprobe/<family>/<column>``.

``inst_gap_prev`` → ``optprobe/convexity/inst_gap_prev``; per-layer columns go under ``layers/``,
``inst_smooth_prev/fc1`` → ``optprobe/smoothness/layers/inst_smooth_prev/fc1`` (so that no name is
both a metric and a folder of metrics, which file-based stores such as MLflow's cannot hold).
Bookkeeping columns (step, epoch, event) are not metrics.

A name never holds a setting's value: the EMA columns ``exp_gap_prev_0.99`` … (one per β of
``ProbeConfig.betas``) are tracked as ``optprobe/convexity/exp_gap_prev_beta0`` …, β's index in
``betas``, and :func:`tracker_config` records the values (``optprobe/beta0 = 0.99``) in the tracker's
run configuration, so that a run with other βs keeps its charts and says which βs they show.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
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


_EMAS = ("exp_gap_", "exp_smooth_")  # columns f"{prefix}_{β:g}", as WindowStats.emas names them


def stable_metric(metric: str, betas: Sequence[float]) -> str:
    """``exp_gap_prev_0.99`` → ``exp_gap_prev_beta0`` when betas[0] = 0.99; other names unchanged."""
    if metric.startswith(_EMAS):
        base, _, value = metric.rpartition("_")
        for index, beta in enumerate(betas):
            if value == f"{beta:g}":
                return f"{base}_beta{index}"
    return metric


def tag(column: str, betas: Sequence[float] = ()) -> str:
    """The tracker name of a table column (an EMA's β given as its index in ``betas``, see the module)."""
    metric, _, layer = column.partition("/")
    metric = stable_metric(metric, betas)
    return (
        f"optprobe/{family(metric)}/layers/{metric}/{layer}"
        if layer
        else f"optprobe/{family(metric)}/{metric}"
    )


def tracked_scalars(row: dict[str, Any], betas: Sequence[float] = ()) -> dict[str, float]:
    """``{tag: value}`` for the finite numeric metrics of a row (NaN means "not measured": skipped)."""
    out = {}
    for column, value in row.items():
        if column in NOT_METRICS or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if math.isfinite(value):
            out[tag(column, betas)] = float(value)
    return out


def tracker_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """A Probe's settings (``asdict(ProbeConfig)``) as ``{"optprobe/<field>": value}``, with each β of
    ``betas`` also as ``optprobe/beta<i>``: the β that the ``…_beta<i>`` names stand for."""
    out = {f"optprobe/{k}": list(v) if isinstance(v, tuple) else v for k, v in config.items()}
    out.update({f"optprobe/beta{i}": float(b) for i, b in enumerate(config.get("betas", ()))})
    return out
