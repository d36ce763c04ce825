"""What a Probe's checkpoint (:meth:`Probe.state_dict`) must share with the Probe it is loaded into, and
how checkpoints from older versions of the format are read."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

from torch import Tensor

from optprobe.errors import OptprobeError
from optprobe.metrics.base import TrajectoryMetric
from optprobe.probe_config import HOW_ONLY, ProbeConfig
from optprobe.runinfo import as_stored, changed_settings
from optprobe.sharding import local

VERSION = 1  # the "version" a state_dict records


def identity(
    config: ProbeConfig, metrics: Sequence[TrajectoryMetric], reference: bool, names: Sequence[str]
) -> dict[str, Any]:
    """The settings a checkpoint records and a Probe must share to load it, in the state_dict's order."""
    return {
        "config": asdict(config),
        "metric_classes": [type(m).__name__ for m in metrics],
        "reference": reference,
        "names": list(names),
    }


def check_fits(
    state: Mapping[str, Any], ours: Mapping[str, Any], params: Mapping[str, Tensor], n_metrics: int
) -> None:
    """Refuse a checkpoint whose Probe had another :func:`identity` (``ours``), shapes or metric count; the
    config setting by setting (:func:`~optprobe.runinfo.changed_settings`: one newer than the checkpoint,
    or one a resumed run may switch, :data:`~optprobe.probe_config.HOW_ONLY`, is no change)."""
    changed = changed_settings(state.get("config") or {}, ours["config"], HOW_ONLY)
    if changed:
        raise OptprobeError(
            f"the checkpoint's Probe had another config ({'; '.join(changed)}); build the Probe with the "
            "same config, reference and model as the saved run"
        )
    for what, value in ((what, state.get(what)) for what in ours if what != "config"):
        if value is not None and as_stored(value) != as_stored(ours[what]):
            raise OptprobeError(
                f"the checkpoint's Probe had another {what} ({value!r}, this one: {ours[what]!r}); "
                "build the Probe with the same config, reference and model as the saved run"
            )
    _check_shapes(state, params)
    if len(state["metrics"]) != n_metrics:
        raise OptprobeError(
            f"the checkpoint holds {len(state['metrics'])} metric states but this Probe has "
            f"{n_metrics}: build the Probe with the same config (and reference) as the saved run"
        )


def saved_snapshots(state: Mapping[str, Any], step: int) -> Mapping[str, Any]:
    """The checkpoint's held points (:meth:`Snapshots.state_dict`); before the table of points, a
    checkpoint held x_{t−1} alone, as "prev"."""
    snapshots = state.get("snapshots")
    if snapshots is None:
        prev = state.get("prev")
        snapshots = {"history": [] if prev is None else [(step - 1, prev)]}
    return snapshots


def _check_shapes(state: Mapping[str, Any], params: Mapping[str, Tensor]) -> None:
    """Refuse a checkpoint whose parameters had other shapes (without "shapes": those of a saved x_{t−1})."""
    if state.get("shapes") is not None:
        saved = dict(zip(params, (tuple(s) for s in state["shapes"]), strict=False))
        ours = {name: tuple(p.shape) for name, p in params.items()}
    else:  # x_{t−1} is stored as local shards: compare with the local shards' shapes
        history = (state.get("snapshots") or {}).get("history") or [(None, {})]
        point = state.get("prev") or history[0][1]  # a saved x_{t−1}: the old "prev", or the newest copy
        saved = {name: tuple(v.shape) for name, v in point.items()}
        ours = {name: tuple(local(p.detach()).shape) for name, p in params.items()}
    for name, shape in saved.items():
        if name in ours and shape != ours[name]:
            raise OptprobeError(
                f"the checkpoint's Probe measured parameter {name!r} with shape {shape}, this model's has "
                f"shape {ours[name]}: resume into the model the run was saved from"
            )
