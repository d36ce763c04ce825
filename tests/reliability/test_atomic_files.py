"""Atomic writes: whole files only, and writers racing for one target do not trip over each other."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from optprobe.files import write_atomic


def test_racing_writers_each_land_a_whole_file_and_leave_no_temporaries(tmp_path: Path):
    target = tmp_path / "pilot.json"
    errors: list[BaseException] = []

    def writer(k: int) -> None:
        try:
            for i in range(100):
                payload = json.dumps({"writer": k, "i": i, "pad": "x" * 10_000})
                write_atomic(target, lambda tmp, p=payload: tmp.write_text(p, encoding="utf-8"))
        except BaseException as err:  # noqa: BLE001 - collected for the assertion below
            errors.append(err)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert json.loads(target.read_text(encoding="utf-8"))["i"] == 99  # a whole file, from one writer
    assert [p.name for p in tmp_path.iterdir()] == ["pilot.json"]


def test_a_failing_write_keeps_the_old_file_and_removes_its_temporary(tmp_path: Path):
    target = tmp_path / "run.json"
    target.write_text("old", encoding="utf-8")

    def broken(tmp: Path) -> None:
        tmp.write_text("half", encoding="utf-8")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic(target, broken)
    assert target.read_text(encoding="utf-8") == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]


def test_the_file_is_synced_before_the_rename_and_the_folder_after(tmp_path: Path, monkeypatch):
    import os

    import optprobe.files as files

    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    def replace(src, dst) -> None:
        events.append("rename")
        real_replace(src, dst)

    monkeypatch.setattr(files.os, "fsync", fsync)
    monkeypatch.setattr(files.os, "replace", replace)
    target = tmp_path / "run.json"
    write_atomic(target, lambda tmp: tmp.write_text("{}", encoding="utf-8"))
    assert len(events) == 3 and events[1] == "rename"
    assert events[0].endswith(".tmp") and Path(events[0]).parent == tmp_path
    assert Path(events[2]) == tmp_path


def test_temporaries_of_dead_writers_are_removed_and_live_ones_kept(tmp_path: Path):
    import os
    import subprocess
    import sys

    child = [sys.executable, "-c", "import os; print(os.getpid())"]
    dead = subprocess.run(child, capture_output=True, text=True, check=True).stdout.strip()
    stale = tmp_path / f".checkpoint.pt.{dead}-0123abcd.tmp"
    live = tmp_path / f".run.json.{os.getpid()}-89abcdef.tmp"
    unrelated = tmp_path / ".notes.tmp"
    for p in (stale, live, unrelated):
        p.write_text("x")
    from optprobe.files import remove_dead_temporaries

    assert remove_dead_temporaries(tmp_path) == [stale]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, unrelated.name])
