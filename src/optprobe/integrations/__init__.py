"""Trainer integrations (Hugging Face, Lightning), each importing its framework only when used."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from optprobe.sinks.names import tag

#: the metrics a trainer's own logger receives (everything goes to the run directory)
LOGGED = ("inst_gap_prev", "inst_smooth_prev", "update_corr", "grad_norm", "full_loss", "sharpness")


class Window(list):
    """A Probe batch that is one optimizer step's micro-batches, as a trainer fills it up before end_step.

    The integrations' loss closures tell it apart from an evaluation or curvature batch, which is one
    batch evaluated by one unscaled forward.
    """


def trainer_scalars(row: dict[str, Any], betas: Sequence[float] = ()) -> dict[str, float]:
    """``{tag: value}`` for the finite LOGGED metrics of a Probe row, named as the tracker sinks name them
    (``optprobe/convexity/inst_gap_prev``, see :mod:`optprobe.sinks.names`)."""
    return {
        tag(k, betas): float(row[k])
        for k in LOGGED
        if isinstance(row.get(k), float) and math.isfinite(row[k])
    }
