"""MLflow sink: one ``log_metrics`` call per row, at the row's step."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from optprobe.errors import OptprobeError
from optprobe.sinks.names import tracked_scalars, tracker_config


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
        self.betas: tuple[float, ...] = ()

    def start(self, config: Mapping[str, Any]) -> None:
        """Record the Probe's settings as run parameters (``optprobe/betas``, ``optprobe/beta0`` …)."""
        self.betas = tuple(config.get("betas", ()))
        params = {k: str(v) for k, v in tracker_config(config).items()}
        self.mlflow.log_params(params, run_id=self.run.info.run_id)

    def write(self, row: dict[str, Any]) -> None:
        metrics = tracked_scalars(row, self.betas)
        if metrics:
            self.mlflow.log_metrics(metrics, step=int(row["step"]), run_id=self.run.info.run_id)

    def close(self) -> None:
        if self.owns_run:
            self.mlflow.end_run()
