"""MLflow sink: one ``log_metrics`` call per row, at the row's step."""

from __future__ import annotations

from typing import Any

from optprobe.errors import OptprobeError
from optprobe.sinks.names import tracked_scalars


class MLflowSink:
    """Logs rows to an MLflow run (a new one under ``run_name`` unless a run is already active)."""

    def __init__(
        self, tracking_uri: str | None = None, run_name: str | None = None, experiment: str | None = None
    ):
        try:
            import mlflow
        except ImportError:
            raise OptprobeError("MLflowSink needs MLflow: pip install mlflow-skinny (or mlflow)") from None
        self.mlflow = mlflow
        if tracking_uri is not None:
            mlflow.set_tracking_uri(tracking_uri)
        if experiment is not None:
            mlflow.set_experiment(experiment)
        self.owns_run = mlflow.active_run() is None
        self.run = mlflow.start_run(run_name=run_name) if self.owns_run else mlflow.active_run()

    def write(self, row: dict[str, Any]) -> None:
        metrics = tracked_scalars(row)
        if metrics:
            self.mlflow.log_metrics(metrics, step=int(row["step"]), run_id=self.run.info.run_id)

    def close(self) -> None:
        if self.owns_run:
            self.mlflow.end_run()
