"""One writer per run directory: a second writer is refused with the holder PID; a killed holder frees it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from optprobe.errors import OptprobeError
from optprobe.locks import run_dir_lock

_HOLD = "import sys, time\nfrom optprobe.locks import run_dir_lock\nwith run_dir_lock(sys.argv[1]):\n" \
        "    print('held', flush=True)\n    time.sleep(60)\n"


def _holder(run_dir: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(run_dir)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_writer_is_refused_naming_the_holder(tmp_path: Path):
    proc = _holder(tmp_path / "run")
    try:
        with pytest.raises(OptprobeError, match=f"PID {proc.pid}\\b.*another --out"), run_dir_lock(
            tmp_path / "run"
        ):
            pass
    finally:
        proc.kill()
        proc.wait()


def test_sigkill_of_the_holder_leaves_no_stale_lock(tmp_path: Path):
    proc = _holder(tmp_path / "run")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with run_dir_lock(tmp_path / "run") as lock:
        assert lock.read_text().strip() == str(os.getpid())


def test_the_lock_is_released_after_the_block_and_reentry_in_sequence_works(tmp_path: Path):
    for _ in range(2):
        with run_dir_lock(tmp_path):
            time.sleep(0)
