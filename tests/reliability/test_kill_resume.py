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


_KILL_IN_ATOMIC_WRITE = """
import os, signal, sys
import optprobe.files as files
fsync = files._fsync
def kill_before_the_rename(path, flags):
    fsync(path, flags)
    if path.name.startswith(".checkpoint.pt."):  # the temporary is written, not yet renamed
        os.kill(os.getpid(), signal.SIGKILL)
files._fsync = kill_before_the_rename
from optprobe.cli import main
sys.exit(main(sys.argv[1:]))
"""


_HOLD_AFTER_12_STEPS = """
import sys, time
from optprobe.experiments import runner
train_step = runner._train_step
def slow_after_12(model, task, optimizer, probe, batch):
    loss = train_step(model, task, optimizer, probe, batch)
    if probe.step == 12:
        print("holding", flush=True)
        time.sleep(120)  # killed here, inside a step, holding the run directory's lock
    return loss
runner._train_step = slow_after_12
from optprobe.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_sigkill_inside_the_atomic_write_and_while_holding_the_lock_with_a_second_writer(tmp_path, capsys):
    """A writer killed inside write_atomic leaves a temporary; a second writer started while the next one
    holds the lock is refused with its PID; that one is SIGKILLed mid-step; the final run removes the
    temporaries and ends with the uninterrupted table."""
    whole, args = _small(tmp_path, "whole")
    assert main([*args, "--no-progress", "--no-report"]) == 0
    run_dir, args = _small(tmp_path, "killed")
    args += ["--no-progress", "--no-report"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    cmd = [sys.executable, "-c", _KILL_IN_ATOMIC_WRITE, *args]
    killed = subprocess.run(cmd, env=env, capture_output=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
    assert list(run_dir.glob(".checkpoint.pt.*.tmp"))  # the half-done write the kill left

    cmd = [sys.executable, "-c", _HOLD_AFTER_12_STEPS, *args]
    holder = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in holder.stdout:  # "== interrupt_test", then "holding" at step 12
        if "holding" in line:
            break
    assert holder.poll() is None, holder.stderr.read()[-2000:]
    capsys.readouterr()
    assert main(args) == 2  # the second writer, concurrent with the holder
    err = capsys.readouterr().err
    assert f"PID {holder.pid}" in err and "Traceback" not in err, err
    holder.kill()
    holder.wait()

    assert main(args) == 0
    _assert_same_table(whole, run_dir)
    assert not list(run_dir.parent.parent.rglob("*.tmp"))
    assert not (run_dir / "checkpoint.pt").exists()


def test_ctrl_c_through_a_pipe_stops_after_the_step_and_checkpoint(tmp_path):
    """`optprobe run 2>&1 | tee log` and Ctrl-C: the reader dies with the writer; the progress bar's next
    write finds a broken pipe, and the run must still finish its step, checkpoint and resume exactly."""
    whole, args = _small(tmp_path, "whole")
    assert main([*args, "--no-progress", "--no-report"]) == 0
    run_dir, args = _small(tmp_path, "piped")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    cmd = [sys.executable, "-m", "optprobe.cli", *args, "--no-report"]  # with the progress bar on stderr
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    while proc.poll() is None and not (run_dir / "metrics.jsonl").exists():
        time.sleep(0.01)
    while proc.poll() is None and len(read_table(run_dir)) < 13:
        time.sleep(0.01)
    proc.stdout.close()  # tee is gone
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130
    info = json.loads((run_dir / "run.json").read_text())
    assert info["finished"] is False and info["steps"] >= 13
    assert main([*args, "--no-progress", "--no-report"]) == 0
    _assert_same_table(whole, run_dir)
