"""Weights & Biases sink: one ``wandb.log`` call per Probe step, against the Probe's own step metric.

The run may be shared with a trainer that logs too (the Hugging Face Trainer's ``report_to="wandb"``
calls ``wandb.log`` without a step, advancing W&B's step at every log), so the sink never passes
``step=``: W&B would drop every row whose step is behind its own. Each row carries the Probe step as
``optprobe/step`` instead, and ``define_metric("optprobe/*", step_metric="optprobe/step")`` makes it
the x-axis of every optprobe value. An epoch-end row carries the same step as the next training step,
so rows are merged per step and a step is logged once the next one begins (or at close).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from optprobe.errors import OptprobeError
from optprobe.sinks.names import STEP_TAG, tracked_scalars, tracker_config


class WandbSink:
    """Logs rows to ``run`` (default: ``wandb.init(**init_kwargs)``; offline with WANDB_MODE=offline)."""

    def __init__(self, run: Any = None, **init_kwargs: Any) -> None:
        try:
            import wandb
        except ImportError:
            raise OptprobeError("WandbSink needs Weights & Biases: pip install wandb") from None
        self.owns_run = run is None
        self.run = wandb.init(**init_kwargs) if run is None else run
        self.run.define_metric(STEP_TAG)
        self.run.define_metric("optprobe/*", step_metric=STEP_TAG)
        self._step: int | None = None
        self._pending: dict[str, float] = {}
        self.betas: tuple[float, ...] = ()

    def start(self, config: Mapping[str, Any]) -> None:
        """Record the Probe's settings in the run's config (``optprobe/betas``, ``optprobe/beta0`` …)."""
        self.betas = tuple(config.get("betas", ()))
        self.run.config.update(tracker_config(config), allow_val_change=True)

    def write(self, row: dict[str, Any]) -> None:
        step = int(row["step"])
        if self._step is not None and step != self._step:
            self._flush()
        self._step = step
        self._pending.update(tracked_scalars(row, self.betas))

    def _flush(self) -> None:
        if self._pending and self._step is not None:
            self.run.log({STEP_TAG: self._step, **self._pending})  # no step=: see the module docstring
        self._pending = {}

    def close(self) -> None:
        self._flush()
        if self.owns_run:
            self.run.finish()
