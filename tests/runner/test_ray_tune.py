"""The Ray executor on Ray Tune, on a local 2-node Ray cluster (two raylets of 1 CPU each on this machine):
a trial whose worker is SIGKILLed mid-run resumes from the run's checkpoint, a killed driver's sweep is
continued by Tuner.restore, and every run's table and the best-settings table equal the local executor's."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

import optprobe
from optprobe.cli import main
from optprobe.errors import OptprobeError
from optprobe.experiments import sweep
from optprobe.experiments.runner import CHECKPOINT
from optprobe.runinfo import read_run_info
from optprobe.sinks import read_table

ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'optprobe[ray]'")
tune = pytest.importorskip("ray.tune")
from optprobe.experiments.ray_tune import (  # noqa: E402
    TuneSink,
    parse_resources,
    read_attempts,
    run_on_tune,
    sweep_key,
    trainable,
)

GRID = {"lr": ["0.001", "0.05"]}
OVERRIDES = ["epochs=20", "checkpoint_every=10"]  # logistic_adamw: 180 steps, long enough to be killed in
QUIET = {
    "RAY_DISABLE_USAGE_STATS": "1",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AUTH_MODE": "disabled",
    "RAY_DEDUP_LOGS": "0",
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",  # no CSV/TensorBoard files per trial: faster, same tables
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}


def _experiment(seeds: int = 1):
    return sweep.expand("convex_sanity", GRID, seeds=seeds, overrides=OVERRIDES, quick=True)


@pytest.fixture(scope="module")
def cluster():
    """Two Ray nodes of one CPU each (one head, one worker raylet), shared by every test here."""
    from ray.cluster_utils import Cluster

    saved = {k: os.environ.get(k) for k in QUIET}
    os.environ.update(QUIET)
    node = {"num_cpus": 1, "object_store_memory": 80 * 2**20}
    cluster = Cluster(initialize_head=True, head_node_args={**node, "include_dashboard": False})
    try:
        cluster.add_node(**node)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False)
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="module")
def local_runs(tmp_path_factory) -> list[Path]:
    """The same sweep on the local executor: the tables every Ray run must equal."""
    return sweep.run_sweep(_experiment(), tmp_path_factory.mktemp("local"), "local", workers=1)


def _assert_same_as_local(run_dirs: list[Path], local_runs: list[Path]) -> None:
    assert [d.name for d in run_dirs] == [d.name for d in local_runs]
    for ray_dir, local_dir in zip(run_dirs, local_runs, strict=True):
        assert read_run_info(ray_dir)["finished"], ray_dir
        pd.testing.assert_frame_equal(read_table(ray_dir), read_table(local_dir), check_exact=True)
    pd.testing.assert_frame_equal(
        sweep.best_settings(run_dirs, list(GRID)), sweep.best_settings(local_runs, list(GRID))
    )


def _kill_when_checkpointed(run_dir: Path, killed: list[int], timeout: float = 300) -> None:
    """SIGKILL the worker training ``run_dir`` once it has a checkpoint and is not finished."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        attempts = read_attempts(run_dir) if (run_dir / CHECKPOINT).exists() else []
        if attempts and not read_run_info(run_dir).get("finished"):
            os.kill(attempts[-1]["pid"], signal.SIGKILL)
            killed.append(attempts[-1]["pid"])
            return
        time.sleep(0.02)


@pytest.mark.slow
def test_a_killed_worker_resumes_and_every_table_equals_the_local_executor(cluster, local_runs, tmp_path):
    experiment = _experiment()
    target = tmp_path / experiment.name / "logistic_adamw__lr0.05_seed0"
    killed: list[int] = []
    killer = threading.Thread(target=_kill_when_checkpointed, args=(target, killed), daemon=True)
    killer.start()
    run_dirs = sweep.run_sweep(experiment, tmp_path, "ray")
    killer.join()
    assert killed, "the worker was not killed mid-run"
    attempts = read_attempts(target)
    assert len(attempts) == 2 and attempts[1]["resumed"]  # Tune retried it; it resumed its checkpoint
    nodes = {a["node_id"] for d in run_dirs for a in read_attempts(d)}
    assert nodes == {n["NodeID"] for n in ray.nodes() if n["Alive"]}  # the runs went to both nodes
    _assert_same_as_local(run_dirs, local_runs)


@pytest.mark.slow
def test_a_sweep_whose_driver_died_is_continued_by_tuner_restore(cluster, local_runs, tmp_path):
    experiment = _experiment()
    tune_dir = tmp_path / experiment.name / f"_tune-{sweep_key(experiment)}"
    slow_run = tmp_path / experiment.name / "logistic_adamw__lr0.001_seed0"
    command = [
        sys.executable, "-m", "optprobe.cli", "sweep", "convex_sanity", "--grid", "lr=0.001,0.05", "--quick",
        "--executor", "ray", "--out", str(tmp_path), "--no-report", *(f"--set={o}" for o in OVERRIDES),
    ]  # fmt: skip
    src = str(Path(optprobe.__file__).parents[1])
    env = {**os.environ, "RAY_ADDRESS": cluster.address, "PYTHONPATH": src}
    driver = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        end = time.monotonic() + 300
        while not (tune.Tuner.can_restore(tune_dir) and (slow_run / CHECKPOINT).exists()):
            assert driver.poll() is None and time.monotonic() < end, "the driver ended before it was killed"
            time.sleep(0.02)
        driver.kill()
    finally:
        driver.kill()
        driver.wait()
    assert not read_run_info(slow_run).get("finished")
    run_dirs = sweep.run_sweep(experiment, tmp_path, "ray")
    assert len(list(tune_dir.glob("_trial*"))) == len(experiment.runs)  # the same trials: restored, not anew
    assert read_attempts(slow_run)[-1]["resumed"]
    _assert_same_as_local(run_dirs, local_runs)


def _trial_resources(device: str, resources: str | None) -> dict[str, float]:
    """What Tune asks Ray for per trial, read from the trainable the way the Tuner wraps it."""
    from ray.tune.trainable.function_trainable import wrap_function

    wrapped = wrap_function(trainable(_experiment(), "/nowhere", device, resources))
    return wrapped.default_resource_request({}).required_resources


def test_cuda_asks_tune_for_one_gpu_per_trial():
    assert _trial_resources("cuda", None) == {"CPU": 1.0, "GPU": 1.0}
    assert _trial_resources("cpu", None) == {"CPU": 1.0}
    assert _trial_resources("cuda", "cpu=2,gpu=0.25") == {"CPU": 2.0, "GPU": 0.25}
    with pytest.raises(OptprobeError, match="GPU"):
        parse_resources("gpu=0", "cuda")
    with pytest.raises(OptprobeError, match="key=value"):
        parse_resources("cpu", "cpu")


def test_an_object_store_uri_is_refused_not_written_to_a_local_folder():
    for uri in ("s3://bucket/runs", Path("gs://bucket/runs")):
        with pytest.raises(OptprobeError, match="shared filesystem"):
            run_on_tune(_experiment(), uri)


def test_the_sweep_command_passes_resources_to_the_ray_executor(monkeypatch, tmp_path):
    seen = {}

    def fake_run_sweep(experiment, out, executor, workers, device, resources):
        seen.update(executor=executor, resources=resources)
        raise OptprobeError("stop here")

    monkeypatch.setattr(sweep, "run_sweep", fake_run_sweep)
    args = ["sweep", "convex_sanity", "--grid", "lr=0.01", "--quick", "--out", str(tmp_path)]
    assert main([*args, "--executor", "ray", "--resources", "cpu=2,gpu=0.5"]) != 0
    assert seen == {"executor": "ray", "resources": "cpu=2,gpu=0.5"}


def test_rows_reach_tune_as_they_are_written_and_the_last_on_close(monkeypatch):
    reported: list[dict] = []
    monkeypatch.setattr(tune, "report", lambda metrics: reported.append(metrics))
    sink = TuneSink(every_s=3600)
    sink.write({"step": 0, "loss": 2.0, "optimizer": "sgd"})  # the first row goes at once
    sink.write({"step": 1, "loss": 1.5})
    sink.write({"step": 2, "loss": 1.0})  # within every_s: kept, not yet reported
    assert reported == [{"step": 0.0, "loss": 2.0}]
    sink.close()
    assert reported[-1] == {"step": 2.0, "loss": 1.0} and len(reported) == 2
    sink.close()  # nothing new: no second report of the same row
    assert len(reported) == 2
