"""SIGKILL at random points leaves a readable run; re-running resumes to the uninterrupted table."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from optprobe.cli import main
from optprobe.sinks import read_table

EXPERIMENT = """
name = "kill_test"
[defaults]
task = "mlp_digits"
task_options = { dropout = 0.2 }
epochs = 6
checkpoint_every = 7
reference = "pilot"
pilot_epochs = 1
probe = { full_batch_every = 9, per_layer = true }
[[runs]]
label = "sgdm_rs"
optimizer = "sgdm"
lr = 0.05
random_scaling = true
schedule = "cosine"
[[runs]]
label = "adamw"
optimizer = "adamw"
lr = 0.001
"""


def _command(config: Path, out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "optprobe.cli",
        "run",
        str(config),
        "--out",
        str(out),
        "--no-progress",
        "--no-report",
    ]


def _assert_same_table(whole: Path, resumed: Path) -> None:
    """The row log byte for byte, and the columnar copy value for value (no tolerance)."""
    assert (resumed / "metrics.jsonl").read_bytes() == (whole / "metrics.jsonl").read_bytes()
    pd.testing.assert_frame_equal(read_table(whole), read_table(resumed), check_exact=True)
    columnar = sorted(p.name for p in whole.glob("metrics.*") if p.suffix in (".parquet", ".csv"))
    assert columnar and columnar == sorted(
        p.name for p in resumed.glob("metrics.*") if p.suffix in (".parquet", ".csv")
    )
    for name in columnar:
        if name.endswith(".csv"):
            assert (resumed / name).read_bytes() == (whole / name).read_bytes()
        else:
            pd.testing.assert_frame_equal(
                pd.read_parquet(whole / name), pd.read_parquet(resumed / name), check_exact=True
            )


def _rows(out: Path) -> int:
    """Complete rows written so far by every run of the experiment."""
    return sum(len(read_table(p.parent)) for p in out.glob("kill_test/*/metrics.jsonl"))


@pytest.mark.slow
def test_killed_runs_resume_to_the_same_table(tmp_path):
    """Kill points: once during start-up, then at seeded random row counts of the table (so they fall inside
    training whatever the machine's speed); each restart resumes from the last checkpoint."""
    config = tmp_path / "kill_test.toml"
    config.write_text(EXPERIMENT)
    assert main(["run", str(config), "--out", str(tmp_path / "whole"), "--no-progress", "--no-report"]) == 0
    total = _rows(tmp_path / "whole")

    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    rng = random.Random(0)
    targets = sorted(rng.sample(range(10, total - 10), 4))
    proc = subprocess.Popen(_command(config, out), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(0.3)  # during the imports
    proc.kill()
    proc.wait()
    for target in targets:
        proc = subprocess.Popen(
            _command(config, out), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        while proc.poll() is None and _rows(out) < target:
            time.sleep(0.01)
        assert proc.poll() is None, f"finished before row {target}: {proc.stderr.read().decode()[-2000:]}"
        proc.kill()
        proc.wait()
        _rows(out)  # every run directory is readable at any kill point
    final = subprocess.run(_command(config, out), env=env, capture_output=True, text=True)
    assert final.returncode == 0, final.stderr[-2000:]
    for label in ("sgdm_rs", "adamw"):
        _assert_same_table(tmp_path / "whole" / "kill_test" / label, out / "kill_test" / label)


def test_same_seed_gives_identical_tables_and_from_reproduces_a_run(tmp_path):
    args = ["run", "convex_sanity", "--quick", "--no-progress", "--no-report"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    run_a = tmp_path / "a" / "convex_sanity" / "logistic_adamw"
    pd.testing.assert_frame_equal(
        read_table(run_a), read_table(tmp_path / "b" / "convex_sanity" / "logistic_adamw")
    )
    assert (
        main(["run", "--from", str(run_a), "--out", str(tmp_path / "c"), "--no-progress", "--no-report"]) == 0
    )
    pd.testing.assert_frame_equal(
        read_table(run_a), read_table(tmp_path / "c" / "convex_sanity" / "logistic_adamw")
    )


SMALL = """
name = "interrupt_test"
[defaults]
task = "mlp_digits"
task_options = { dropout = 0.2 }
epochs = 3
checkpoint_every = 5
reference = "pilot"
pilot_epochs = 1
probe = { full_batch_every = 4 }
[[runs]]
label = "sgdm"
optimizer = "sgdm"
lr = 0.05
random_scaling = true
schedule = "cosine"
"""


def _small(tmp_path: Path, out: str) -> tuple[Path, list[str]]:
    config = tmp_path / "interrupt_test.toml"
    config.write_text(SMALL)
    return tmp_path / out / "interrupt_test" / "sgdm", ["run", str(config), "--out", str(tmp_path / out)]


def test_ctrl_c_stops_after_a_whole_step_and_the_run_resumes_to_the_same_table(tmp_path):
    whole, args = _small(tmp_path, "whole")
    assert main([*args, "--no-progress", "--no-report"]) == 0
    run_dir, args = _small(tmp_path, "interrupted")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    cmd = [sys.executable, "-m", "optprobe.cli", *args, "--no-progress", "--no-report"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    while proc.poll() is None and not (run_dir / "metrics.jsonl").exists():
        time.sleep(0.01)
    while proc.poll() is None and len(read_table(run_dir)) < 13:  # between checkpoints (every 5 steps)
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130, proc.stderr.read().decode()[-2000:]
    info = json.loads((run_dir / "run.json").read_text())
    assert info["finished"] is False and 13 <= info["steps"] < len(read_table(whole))
    assert main([*args, "--no-progress", "--no-report"]) == 0
    _assert_same_table(whole, run_dir)


def test_a_crash_in_the_last_epoch_end_resumes_and_writes_that_epoch_end(tmp_path, monkeypatch):
    """3 epochs of 23 steps with a checkpoint every 23: the last checkpoint falls on the last step, before
    its epoch end; a crash in that epoch end must not leave the run finished, nor resume without it."""
    from optprobe.probe import Probe

    whole, args = _small(tmp_path, "whole")
    assert main([*args, "--no-progress", "--no-report"]) == 0
    run_dir, args = _small(tmp_path, "crashed")
    args += ["--set", "checkpoint_every=23"]
    original = Probe.end_epoch

    def crash_in_the_last(probe: Probe):
        if probe.epoch == 2:
            raise RuntimeError("out of memory in the evaluation pass")
        return original(probe)

    monkeypatch.setattr(Probe, "end_epoch", crash_in_the_last)
    with pytest.raises(RuntimeError, match="out of memory"):
        main([*args, "--no-progress", "--no-report"])
    assert json.loads((run_dir / "run.json").read_text())["finished"] is False
    monkeypatch.setattr(Probe, "end_epoch", original)
    assert main([*args, "--no-progress", "--no-report"]) == 0
    table = read_table(run_dir)
    assert (table["event"] == "epoch_end").sum() == 3
    _assert_same_table(whole, run_dir)
