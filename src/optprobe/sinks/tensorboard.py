"""TensorBoard sink: every finite metric of a row as a scalar at the row's step."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from optprobe.errors import OptprobeError
from optprobe.sinks.names import tracked_scalars, tracker_config


class TensorBoardSink:
    """Writes rows to ``log_dir`` with ``torch.utils.tensorboard.SummaryWriter``."""

    def __init__(self, log_dir: str | os.PathLike[str]) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise OptprobeError("TensorBoardSink needs tensorboard: pip install tensorboard") from None
        self.writer = SummaryWriter(log_dir=str(log_dir))
        self.betas: tuple[float, ...] = ()

    def start(self, config: Mapping[str, Any]) -> None:
        """Record the Probe's settings as the text ``optprobe/config`` (a Markdown table, βs included)."""
        self.betas = tuple(config.get("betas", ()))
        lines = ["| setting | value |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in tracker_config(config).items()]
        self.writer.add_text("optprobe/config", "\n".join(lines), global_step=0)

    def write(self, row: dict[str, Any]) -> None:
        for name, value in tracked_scalars(row, self.betas).items():
            self.writer.add_scalar(name, value, global_step=int(row["step"]))

    def close(self) -> None:
        self.writer.close()
