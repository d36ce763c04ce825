"""Weights & Biases sink: one ``wandb.log`` call per step, with a monotone step.

W&B drops a log whose step is lower than the last one, and an epoch-end row carries the same step as
the next training step; so rows are merged per step and a step is logged once the next one begins
(or at close).
"""

from __future__ import annotations

from typing import Any

from optprobe.errors import OptprobeError
from optprobe.sinks.names import tracked_scalars


class WandbSink:
    """Logs rows to ``run`` (default: ``wandb.init(**init_kwargs)``; offline with WANDB_MODE=offline)."""

    def __init__(self, run: Any = None, **init_kwargs: Any) -> None:
        try:
            import wandb
        except ImportError:
            raise OptprobeError("WandbSink needs Weights & Biases: pip install wandb") from None
        self.owns_run = run is None
        self.run = wandb.init(**init_kwargs) if run is None else run
        self._step: int | None = None
        self._pending: dict[str, float] = {}

    def write(self, row: dict[str, Any]) -> None:
        step = int(row["step"])
        if self._step is not None and step != self._step:
            self._flush()
        self._step = step
        self._pending.update(tracked_scalars(row))

    def _flush(self) -> None:
        if self._pending and self._step is not None:
            self.run.log(self._pending, step=self._step)
        self._pending = {}

    def close(self) -> None:
        self._flush()
        if self.owns_run:
            self.run.finish()
