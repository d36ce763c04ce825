"""One writer per run directory: an advisory lock that the operating system releases when its holder dies.

``flock`` on ``<run dir>/.lock`` is held for as long as a run trains into that directory, so a second
``optprobe run`` (or sweep worker) on the same directory is refused with the holder's PID, and a
SIGKILL never leaves a stale lock behind: the kernel drops it with the process's file descriptors.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from optprobe.errors import OptprobeError

LOCK_NAME = ".lock"


@contextlib.contextmanager
def run_dir_lock(run_dir: str | os.PathLike[str]) -> Iterator[Path]:
    """Hold the run directory's lock for the ``with`` block; raise :class:`OptprobeError` naming the
    holder's PID when another process holds it."""
    folder = Path(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise OptprobeError(
                f"{folder} is being written by another optprobe process (PID {holder}); wait for it to "
                "finish, stop it, or give this command another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)  # releases the lock
