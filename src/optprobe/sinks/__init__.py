"""Where metric rows go: the run directory's table (default), TensorBoard, W&B, MLflow.

The tracker sinks import their package only when constructed.
"""

from optprobe.sinks.base import Sink
from optprobe.sinks.mlflow import MLflowSink
from optprobe.sinks.table import TableSink, read_table
from optprobe.sinks.tensorboard import TensorBoardSink
from optprobe.sinks.wandb import WandbSink

__all__ = ["MLflowSink", "Sink", "TableSink", "TensorBoardSink", "WandbSink", "read_table"]
