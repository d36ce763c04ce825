"""Files written whole or not at all: a temporary file of the writer's own, then a rename over the target."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable
from pathlib import Path

#: ``.<target name>.<writer pid>-<8 hex>.tmp``: the temporaries :func:`write_atomic` makes.
_TEMPORARY = re.compile(r"^\..+\.(?P<pid>\d+)-[0-9a-f]{8}\.tmp$")


def write_atomic(path: str | os.PathLike[str], write: Callable[[Path], object]) -> Path:
    """``write(tmp)`` on a fresh temporary path beside ``path``, fsync it, rename it over ``path``, and
    fsync the folder.

    A reader sees the old file or the new one, never half of one, also after a kill or a power loss;
    writers racing for the same target (parallel sweep workers) each use their own temporary, and the
    last rename wins.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        write(tmp)
        _fsync(tmp, os.O_RDONLY)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync(path.parent, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    return path


def remove_dead_temporaries(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporaries that :func:`write_atomic` left in ``folder`` when its writer was killed
    (the writer's PID no longer runs); returns what was deleted. Temporaries of live writers stay."""
    removed = []
    for entry in Path(folder).iterdir() if Path(folder).is_dir() else ():
        match = _TEMPORARY.match(entry.name)
        if match and entry.is_file() and not _alive(int(match["pid"])):
            entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a live process of another user
        return True
    return True


def _fsync(path: Path, flags: int) -> None:
    try:
        fd = os.open(path, flags)
    except OSError:  # a folder cannot be opened for fsync on some systems (Windows)
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
