"""Faults and bad input at the CLI: one line on stderr and rc 2 (never a traceback), and an existing run
directory left as it was unless the command resumed it (#15)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from optprobe.cli import main
from optprobe.locks import LOCK_NAME

TINY = """
name = "fz"
[defaults]
task = "least_squares"
max_steps = 12
checkpoint_every = 4
keep_checkpoint = true
probe = { full_batch_every = 4 }
[[runs]]
label = "a"
optimizer = "sgd"
lr = 0.05
"""
QUIET = ["--no-progress", "--no-report"]


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (but the lock file, rewritten by every writer) → hash of its bytes."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != LOCK_NAME
    }


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """A finished tiny run (checkpoint kept), made once; tests copy it."""
    root = tmp_path_factory.mktemp("base")
    (root / "fz.toml").write_text(TINY)
    assert main(["run", str(root / "fz.toml"), "--out", str(root / "out"), *QUIET]) == 0
    return root


def _copy(base: Path, where: Path) -> tuple[Path, Path]:
    shutil.copytree(base, where)
    return where / "fz.toml", where / "out" / "fz" / "a"


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("optprobe: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _unfinish(run_dir: Path) -> None:
    info = json.loads((run_dir / "run.json").read_text())
    (run_dir / "run.json").write_text(json.dumps({**info, "finished": False}))


DAMAGES = {
    "run.json corrupted": lambda d: (d / "run.json").write_text('{"finished": tru'),
    "run.json empty": lambda d: (d / "run.json").write_text(""),
    "run.json not an object": lambda d: (d / "run.json").write_text("[1, 2]"),
    "garbage middle row": lambda d: (d / "metrics.jsonl").write_text(
        "".join(
            "garbage\n" if i == 2 else line
            for i, line in enumerate((d / "metrics.jsonl").read_text().splitlines(True))
        )
    ),
}


@pytest.mark.parametrize("damage", DAMAGES)
@pytest.mark.parametrize("command", ["run", "compare", "report"])
def test_a_damaged_run_directory_is_one_error_line_and_stays_as_it_was(
    base, tmp_path, capsys, damage, command
):
    config, run_dir = _copy(base, tmp_path / "c")
    DAMAGES[damage](run_dir)
    before = snapshot(run_dir)
    args = {
        "run": ["run", str(config), "--out", str(run_dir.parent.parent), "--no-progress"],  # and report
        "compare": ["compare", str(run_dir)],
        "report": ["report", str(run_dir), "--out", str(tmp_path / "report")],
    }[command]
    capsys.readouterr()
    assert main(args) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert str(run_dir) in line
    assert snapshot(run_dir) == before


@pytest.mark.parametrize(
    "damage, says",
    [
        (lambda d: (d / "checkpoint.pt").write_bytes(b"garbage"), "delete"),
        (lambda d: (d / "checkpoint.pt").write_bytes(b""), "delete"),
        (
            lambda d: (d / "metrics.jsonl").write_text(
                "".join((d / "metrics.jsonl").read_text().splitlines(True)[:2])
            ),
            "do not belong together",
        ),
    ],
    ids=["garbage checkpoint", "empty checkpoint", "checkpoint after the last row"],
)
def test_a_checkpoint_that_cannot_resume_says_how_to_restart(base, tmp_path, capsys, damage, says):
    config, run_dir = _copy(base, tmp_path / "c")
    _unfinish(run_dir)
    damage(run_dir)
    before = snapshot(run_dir)
    assert main(["run", str(config), "--out", str(run_dir.parent.parent), *QUIET]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert says in line and "step 0" in line and str(run_dir / "checkpoint.pt") in line
    assert snapshot(run_dir) == before


BAD_FILES = {
    "no name": ("[[runs]]\nlabel = 'a'\n", "'name' is required"),
    "no runs": ("name = 'x'\n", "no [[runs]]"),
    "bad curvature option": (
        "name = 'x'\n[[runs]]\ncurvature = [{ name = 'sharpness', options = { kk = 3 } }]\n",
        "unexpected keyword argument 'kk'",
    ),
    "curvature every 0": ("name = 'x'\n[[runs]]\ncurvature = [{ name = 'sharpness', every = 0 }]\n", "≥ 1"),
    "bad task option": ("name = 'x'\n[[runs]]\ntask_options = { kk = 3 }\n", "its options are"),
    "not UTF-8": (b"name = '\xff\xfe'\n[[runs]]\n", "not UTF-8"),
}


@pytest.mark.parametrize("case", BAD_FILES)
def test_a_bad_experiment_file_is_one_error_line_and_writes_nothing(tmp_path, capsys, case):
    text, says = BAD_FILES[case]
    path = tmp_path / "x.toml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    assert main(["run", str(path), "--out", str(tmp_path / "out"), *QUIET]) == 2
    assert says in _one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "out").exists()


def test_out_pointing_at_a_file_is_refused(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert main(["run", "convex_sanity", "--quick", "--out", str(tmp_path / "file"), *QUIET]) == 2
    assert "is a file" in _one_error_line(capsys.readouterr().err)


@pytest.mark.parametrize(
    "error, says",
    [
        (OSError(28, "No space left on device", "metrics.jsonl"), "disk is full"),
        (OSError(27, "File too large", "metrics.jsonl"), "size"),
        (PermissionError(13, "Permission denied", "run.json"), "permission"),
        (OSError(30, "Read-only file system", "run.json"), "read-only"),
    ],
    ids=["disk full", "file too large", "permission", "read-only"],
)
def test_the_machine_refusing_a_write_is_one_error_line(base, tmp_path, capsys, monkeypatch, error, says):
    """Root ignores permissions, so the failing write is injected where the table is written."""
    from optprobe.sinks import table

    def refuse(*args, **kwargs):
        raise error

    config, run_dir = _copy(base, tmp_path / "c")
    monkeypatch.setattr(table.TableSink, "write", refuse)
    assert main(["run", str(config), "--out", str(tmp_path / "new"), *QUIET]) == 2
    assert says in _one_error_line(capsys.readouterr().err)


def test_an_unknown_os_error_is_not_hidden(base, tmp_path, monkeypatch):
    """Only the machine's refusals are translated: any other OSError stays a traceback to report."""
    from optprobe.sinks import table

    def fail(*args, **kwargs):
        raise OSError(5, "Input/output error")

    config, _ = _copy(base, tmp_path / "c")
    monkeypatch.setattr(table.TableSink, "write", fail)
    with pytest.raises(OSError, match="Input/output"):
        main(["run", str(config), "--out", str(tmp_path / "new"), *QUIET])


# ------------------------------------------------------------------------------------------- fuzz
_SNIPPETS = [
    "name = 'fz'",
    "name = 3",
    "[[runs]]",
    "[defaults]",
    "[quick]",
    "label = 'a'",
    "label = 'a.b'",
    "task = 'least_squares'",
    "task = 'nope'",
    "task_options = { kk = 3 }",
    "optimizer = 'adamw'",
    "optimizer = 'zzz'",
    "optimizer_options = { betas = 3 }",
    "lr = 0.1",
    "lr = -1",
    "lr = 'fast'",
    "lr = nan",
    "epochs = -2",
    "schedule = 'cosine'",
    "reference = 'minimizer'",
    "reference = 'pilot'",
    "curvature = [{ name = 'sharpness', every = 2 }]",
    "curvature = [{ name = 'sharpness', every = 0 }]",
    "curvature = [{ name = 'sharpness', options = { kk = 3 } }]",
    "curvature = [{ name = 'nope' }]",
    "curvature = 3",
    "probe = { metrics = ['nope'] }",
    "probe = { every = 0 }",
    "probe = { window = 'nope' }",
    "probe = { full_batch_every = 2 }",
    "on_divergence = 'skip'",
    "seeds = 0",
    "x = [",
    "\xff",
]
_SETS = st.sampled_from(
    ["lr=2", "lr=0", "lr=1e400", "lr=x", "probe.every=0", "probe.every=2", "batch_size=-1", "seed=-3",
     "optimizer=sgdm", "optimizer=nope", "label=b", "runs.a.lr=0.5", "runs.zz.lr=1", "=3", "lr", "task=2"]
)  # fmt: skip


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(st.sampled_from(_SNIPPETS), max_size=8), sets=st.lists(_SETS, max_size=3))
def test_fuzzed_experiment_files_and_overrides_give_rc_0_or_2_never_a_traceback(
    tmp_path_factory, capsys, lines, sets
):
    where = tmp_path_factory.mktemp("fuzz")
    path = where / "x.toml"
    path.write_bytes("\n".join(lines).encode("utf-8", "surrogateescape"))
    overrides = [a for s in sets for a in ("--set", s)] + ["--set", "max_steps=2"]  # keep every run short
    capsys.readouterr()
    rc = main(["run", str(path), "--out", str(where / "out"), *QUIET, *overrides])
    err = capsys.readouterr().err
    assert rc in (0, 2) or (rc == 1 and "diverged" in err), err
    assert "Traceback" not in err
    if rc == 2:
        _one_error_line(err)


_DAMAGE_OPS = st.sampled_from(["truncate", "garbage", "delete", "unfinish", "flip"])
_FILES = st.sampled_from(["run.json", "metrics.jsonl", "checkpoint.pt", "metrics.parquet"])


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    damages=st.lists(st.tuples(_FILES, _DAMAGE_OPS, st.floats(0, 1)), min_size=1, max_size=3),
    command=st.sampled_from(["run", "compare"]),
)
@example(damages=[("run.json", "delete", 0.0), ("run.json", "unfinish", 0.0)], command="run")  # no run.json
def test_fuzzed_damaged_run_directories_give_rc_0_or_2_and_change_nothing_unless_resumed(
    base, tmp_path_factory, capsys, damages, command
):
    config, run_dir = _copy(base, tmp_path_factory.mktemp("fuzz") / "c")
    for name, op, where in damages:
        path = run_dir / name
        data = path.read_bytes() if path.exists() else b""
        cut = int(where * len(data))
        if op == "truncate":
            path.write_bytes(data[:cut])
        elif op == "garbage":
            path.write_bytes(data[:cut] + b"\x00garbage\n{" + data[cut + 9 :])
        elif op == "delete":
            path.unlink(missing_ok=True)
        elif op == "flip" and data:
            path.write_bytes(data[:cut] + bytes([data[min(cut, len(data) - 1)] ^ 0xFF]) + data[cut + 1 :])
        elif op == "unfinish" and name == "run.json":
            with contextlib.suppress(OSError, ValueError, TypeError):  # unless already damaged or deleted
                _unfinish(run_dir)
    before = snapshot(run_dir)
    resumable = _unfinished(run_dir)
    args = ["run", str(config), "--out", str(run_dir.parent.parent), *QUIET] if command == "run" else [
        "compare", str(run_dir)
    ]  # fmt: skip
    capsys.readouterr()
    rc = main(args)
    err = capsys.readouterr().err
    assert rc in (0, 2), err
    assert "Traceback" not in err
    if rc == 2:
        _one_error_line(err)
    if not (command == "run" and resumable and rc == 0):
        assert snapshot(run_dir) == before


def _unfinished(run_dir: Path) -> bool:
    try:
        info = json.loads((run_dir / "run.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(info, dict) and not info.get("finished")


# ------------------------------------------------------------------------------------- divergence
def test_a_divergence_the_experiment_expects_is_said_but_is_not_a_failure(base, tmp_path, capsys):
    """relaxed_smoothness runs SGD at a step size where it blows up on purpose: `run --all` must exit 0."""
    config, _ = _copy(base, tmp_path / "c")
    out = tmp_path / "expected"
    args = ["run", str(config), "--out", str(out), *QUIET, "--set", "lr=1e4", "--set", "max_steps=200"]
    assert main([*args, "--set", "on_divergence=expected"]) == 0
    said = capsys.readouterr().err
    record = json.loads((out / "fz" / "a" / "run.json").read_text())["divergence"]
    assert record["policy"] == "expected" and f"at step {record['step']}" in said and "expects" in said
    from optprobe.report import load_run

    card = {v.key: v for v in load_run(out / "fz" / "a").verdicts}
    assert card["divergence"].verdict == "fails" and "the experiment expects it" in card["divergence"].detail


def test_a_divergence_is_recorded_and_said_again_by_every_later_command(base, tmp_path, capsys):
    config, _ = _copy(base, tmp_path / "c")
    out = tmp_path / "diverged"
    args = ["run", str(config), "--out", str(out), *QUIET, "--set", "lr=1e4", "--set", "max_steps=200"]
    args += ["--set", "keep_checkpoint=false"]
    assert main(args) == 1
    first = capsys.readouterr().err
    run_dir = out / "fz" / "a"
    record = json.loads((run_dir / "run.json").read_text())["divergence"]
    assert record["policy"] == "stop" and record["loss"] in ("inf", "nan") and 0 < record["step"] < 199
    assert f"at step {record['step']}" in first and "diverged" in first
    assert not (run_dir / "checkpoint.pt").exists()  # finished: the checkpoint is dropped
    before = snapshot(run_dir)
    assert main(args) == 1  # the same command again: nothing to train, the divergence said again
    assert f"at step {record['step']}" in capsys.readouterr().err and snapshot(run_dir) == before
    assert main(["compare", str(run_dir)]) == 0
    assert f"at step {record['step']}" in capsys.readouterr().err

    from optprobe.report import load_run

    card = {v.key: v for v in load_run(run_dir).verdicts}
    assert card["divergence"].verdict == "fails" and f"step {record['step']}" in card["divergence"].detail
    assert {v.verdict for v in card.values()} <= {"holds", "holds with factor α", "fails", "inconclusive",
                                                  "not measured"}  # fmt: skip


def test_a_finished_run_drops_its_checkpoint_unless_asked_to_keep_it(base, tmp_path):
    assert (base / "out" / "fz" / "a" / "checkpoint.pt").exists()  # keep_checkpoint = true
    config, _ = _copy(base, tmp_path / "c")
    args = ["run", str(config), "--out", str(tmp_path / "new"), *QUIET, "--set", "keep_checkpoint=false"]
    assert main(args) == 0
    assert not (tmp_path / "new" / "fz" / "a" / "checkpoint.pt").exists()


def test_a_one_shot_generator_as_eval_loader_is_refused_at_construction():
    import torch
    from torch import nn

    from optprobe.errors import OptprobeError
    from optprobe.probe import Probe

    batches = [(torch.randn(4, 2), torch.randn(4))]
    with pytest.raises(OptprobeError, match="one-shot iterator.*list of batches"):
        Probe(nn.Linear(2, 1), lambda m, b: m(b[0]).mean(), eval_loader=(b for b in batches), out_dir=None)
    Probe(nn.Linear(2, 1), lambda m, b: m(b[0]).mean(), eval_loader=batches, out_dir=None)  # re-iterable


def test_output_into_a_closed_pipe_is_dropped_quietly():
    """`optprobe list | head -1`: the reader leaves after one line; no BrokenPipeError traceback."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    cmd = [sys.executable, "-m", "optprobe.cli", "list"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.read(1)
    proc.stdout.close()
    assert proc.wait(timeout=60) == 0
    assert proc.stderr.read() == b""
