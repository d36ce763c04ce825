"""Stable, namespaced metric names for trackers: ``optprobe/<family>/<column>``, with the family and
the column stems each metric class declares (``family``, ``columns``, ``emas``; see
:class:`optprobe.metrics.base.TrajectoryMetric`), so no list of names is kept here.

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
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the registry imports torch; names are computed without it until a row is tracked
    from optprobe.metrics.registry import Declared

NOT_METRICS = frozenset({"step", "epoch", "event"})
#: the columns the Probe writes itself, outside any metric class: the training loss, lr and RS scale
TRAINING_COLUMNS = ("loss", "lr", "scale")
#: the Probe step of a row, as trackers whose own step counter is shared with the trainer log it
STEP_TAG = "optprobe/step"


def family(column: str, declared: Declared | None = None) -> str:
    """The metric family of a table column, as its metric class declares it (``family``, ``columns``):
    "train" for loss, lr and scale, "other" for a column no metric declares."""
    if column in TRAINING_COLUMNS:
        return "train"
    for stem, name in (declared or _declared()).stems:  # longest stem first
        if column == stem or column.startswith(stem + "_"):
            return name
    return "other"


def _declared() -> Declared:
    from optprobe.metrics.registry import declared_columns  # imports torch: only once a row is tracked

    return declared_columns()


def stable_metric(metric: str, betas: Sequence[float], declared: Declared | None = None) -> str:
    """``exp_gap_prev_0.99`` → ``exp_gap_prev_beta0`` when betas[0] = 0.99; other names unchanged."""
    if metric.startswith(tuple(f"{stem}_" for stem in (declared or _declared()).emas)):
        base, _, value = metric.rpartition("_")
        for index, beta in enumerate(betas):
            if value == f"{beta:g}":
                return f"{base}_beta{index}"
    return metric


def tag(column: str, betas: Sequence[float] = (), declared: Declared | None = None) -> str:
    """The tracker name of a table column (an EMA's β given as its index in ``betas``, see the module)."""
    declared = declared or _declared()
    metric, _, layer = column.partition("/")
    metric = stable_metric(metric, betas, declared)
    name = family(metric, declared)
    return f"optprobe/{name}/layers/{metric}/{layer}" if layer else f"optprobe/{name}/{metric}"


def tracked_scalars(row: dict[str, Any], betas: Sequence[float] = ()) -> dict[str, float]:
    """``{tag: value}`` for the finite numeric metrics of a row (NaN means "not measured": skipped)."""
    declared = _declared()  # once per row
    out = {}
    for column, value in row.items():
        if column in NOT_METRICS or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if math.isfinite(value):
            out[tag(column, betas, declared)] = float(value)
    return out


def tracker_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """A Probe's settings (``asdict(ProbeConfig)``) as ``{"optprobe/<field>": value}``, with each β of
    ``betas`` also as ``optprobe/beta<i>``: the β that the ``…_beta<i>`` names stand for."""
    out = {f"optprobe/{k}": list(v) if isinstance(v, tuple) else v for k, v in config.items()}
    out.update({f"optprobe/beta{i}": float(b) for i, b in enumerate(config.get("betas", ()))})
    return out
