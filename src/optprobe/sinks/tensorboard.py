"""TensorBoard sink: every finite metric of a row as a scalar at the row's step."""

from __future__ import annotations

import os
from typing import Any

from optprobe.errors import OptprobeError
from optprobe.sinks.names import tracked_scalars


class TensorBoardSink:
    """Writes rows to ``log_dir`` with ``torch.utils.tensorboard.SummaryWriter``."""

    def __init__(self, log_dir: str | os.PathLike[str]) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise OptprobeError("TensorBoardSink needs tensorboard: pip install tensorboard") from None
        self.writer = SummaryWriter(log_dir=str(log_dir))

    def write(self, row: dict[str, Any]) -> None:
        for name, value in tracked_scalars(row).items():
            self.writer.add_scalar(name, value, global_step=int(row["step"]))

    def close(self) -> None:
        self.writer.close()
