"""Tracker sinks receive every finite metric under a stable namespaced name, and can be read back."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import mse_loss, train
from torch import nn

from optprobe.probe import Probe, ProbeConfig
from optprobe.sinks.names import family, tag, tracked_scalars


def test_names_are_namespaced_by_family_and_nan_is_skipped():
    row = {"step": 3, "epoch": 0, "event": "step", "loss": 1.0, "inst_gap_prev": -0.1,
           "inst_smooth_prev/fc1": 2.0, "update_corr": math.nan, "full_loss": 0.5, "sharpness": 9.0,
           "grad_l1": 4.0}  # fmt: skip
    assert tracked_scalars(row) == {
        "optprobe/train/loss": 1.0,
        "optprobe/convexity/inst_gap_prev": -0.1,
        "optprobe/smoothness/layers/inst_smooth_prev/fc1": 2.0,
        "optprobe/fullbatch/full_loss": 0.5,
        "optprobe/curvature/sharpness": 9.0,
        "optprobe/norms/grad_l1": 4.0,
    }
    assert (
        family("cum_update_corr_rs") == "correlation"
        and tag("r_med/fc1") == "optprobe/curvature/layers/r_med/fc1"
    )


def test_ema_names_hold_the_index_of_beta_not_its_value():
    betas = (0.99, 0.9)
    assert tag("exp_gap_prev_0.99", betas) == "optprobe/convexity/exp_gap_prev_beta0"
    assert tag("exp_gap_ref_0.9", betas) == "optprobe/convexity/exp_gap_ref_beta1"
    assert tag("exp_smooth_prev_0.9/fc1", betas) == "optprobe/smoothness/layers/exp_smooth_prev_beta1/fc1"
    assert tag("avg_gap_prev", betas) == "optprobe/convexity/avg_gap_prev"


def _probed_run(tmp_path, sink, epochs=2, betas=(0.99,)):
    x, y = torch.randn(32, 3), torch.randn(32)
    model = nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    batches = [(x[i : i + 8], y[i : i + 8]) for i in range(0, 32, 8)]
    probe = Probe(model, mse_loss, optimizer=opt, eval_loader=[(x, y)], out_dir=tmp_path / "run",
                  sinks=[sink], config=ProbeConfig(per_layer=True, betas=betas))  # fmt: skip
    train(model, mse_loss, batches, opt, probe, epochs=epochs)
    return probe.table()


def test_tensorboard_sink_round_trip(tmp_path):
    pytest.importorskip("tensorboard", reason="optional extra: pip install tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from optprobe.sinks import TensorBoardSink

    table = _probed_run(tmp_path, TensorBoardSink(tmp_path / "tb"), betas=(0.9, 0.5))
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    gaps = events.Scalars("optprobe/convexity/inst_gap_prev")
    expected = table.dropna(subset=["inst_gap_prev"])
    assert [e.step for e in gaps] == list(expected["step"])
    assert [e.value for e in gaps] == pytest.approx(list(expected["inst_gap_prev"]), rel=1e-6)
    tags = events.Tags()["scalars"]
    assert "optprobe/fullbatch/full_loss" in tags
    # no tag holds a β value: the EMA with β = 0.5, the second listed, is "…_beta1"
    assert not [t for t in tags if "0.9" in t or "0.5" in t]
    emas = events.Scalars("optprobe/smoothness/exp_smooth_prev_beta1")
    expected = table.dropna(subset=["exp_smooth_prev_0.5"])["exp_smooth_prev_0.5"]
    assert [e.value for e in emas] == pytest.approx(list(expected), rel=1e-6)
    (config,) = events.Tensors("optprobe/config/text_summary")
    text = config.tensor_proto.string_val[0].decode()
    assert "| optprobe/beta0 | 0.9 |" in text and "| optprobe/beta1 | 0.5 |" in text


def test_mlflow_sink_round_trip(tmp_path, monkeypatch):
    pytest.importorskip("mlflow", reason="optional extra: pip install mlflow-skinny")
    from mlflow.tracking import MlflowClient

    from optprobe.sinks import MLflowSink

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # a local file store: no server, no database
    uri = (tmp_path / "mlruns").as_uri()
    sink = MLflowSink(tracking_uri=uri, run_name="probe", experiment="optprobe-test")
    table = _probed_run(tmp_path, sink, betas=(0.9, 0.5))
    client = MlflowClient(tracking_uri=uri)
    history = client.get_metric_history(sink.run.info.run_id, "optprobe/norms/grad_norm")
    assert sorted(m.step for m in history) == sorted(table.dropna(subset=["grad_norm"])["step"])
    run = client.get_run(sink.run.info.run_id)
    assert run.data.params["optprobe/beta1"] == "0.5"
    assert "optprobe/convexity/exp_gap_prev_beta1" in run.data.metrics


def test_mlflow_sink_works_with_the_readme_defaults(tmp_path, monkeypatch):
    """The README's ``MLflowSink(run_name=...)`` with no URI and no environment: MLflow's own default store
    (sqlite ``mlflow.db`` in the working directory), which needs what the ``trackers`` extra installs."""
    pytest.importorskip("mlflow", reason="optional extra: pip install mlflow-skinny")
    import mlflow
    from mlflow.tracking import MlflowClient

    from optprobe.sinks import MLflowSink

    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_ALLOW_FILE_STORE", "MLFLOW_REGISTRY_URI",
                "MLFLOW_EXPERIMENT_ID"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    mlflow.set_tracking_uri(None)  # a fresh process: forget what earlier tests of this one set
    monkeypatch.setattr(mlflow.tracking.fluent, "_active_experiment_id", None)
    sink = MLflowSink(run_name="probe")
    table = _probed_run(tmp_path, sink)
    history = MlflowClient().get_metric_history(sink.run.info.run_id, "optprobe/norms/grad_norm")
    assert sorted(m.step for m in history) == sorted(table.dropna(subset=["grad_norm"])["step"])


def test_wandb_sink_logs_one_dict_per_step_with_monotone_steps(tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason="optional extra: pip install wandb")
    from wandb_files import config_updates, history

    from optprobe.sinks import WandbSink

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    sink = WandbSink(project="optprobe-test", mode="offline", dir=str(tmp_path))
    table = _probed_run(tmp_path, sink, betas=(0.9, 0.5))
    (run_file,) = (tmp_path / "wandb").glob("offline-run-*/run-*.wandb")
    assert config_updates(run_file)["optprobe/beta1"] == 0.5
    steps = [r["optprobe/step"] for r in history(run_file) if "optprobe/step" in r]
    assert steps == sorted(set(table["step"]))  # one dict per step, the epoch-end rows merged in
    merged = {r["optprobe/step"]: r for r in history(run_file) if "optprobe/step" in r}
    epoch_end = table[table["event"] == "epoch_end"].iloc[0]
    assert merged[int(epoch_end["step"])]["optprobe/fullbatch/full_loss"] == pytest.approx(
        epoch_end["full_loss"]
    )
