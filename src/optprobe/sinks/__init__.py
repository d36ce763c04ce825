"""Where metric rows go: the run directory's table (default), TensorBoard, W&B, MLflow."""

from optprobe.sinks.base import Sink
from optprobe.sinks.table import TableSink, read_table

__all__ = ["Sink", "TableSink", "read_table"]
