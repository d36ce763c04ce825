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
