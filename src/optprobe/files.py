"""Files written whole or not at all: a temporary file of the writer's own, then a rename over the target."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path


def write_atomic(path: str | os.PathLike[str], write: Callable[[Path], object]) -> Path:
    """``write(tmp)`` on a fresh temporary path beside ``path``, then rename it over ``path``.

    A reader sees the old file or the new one, never half of one, also after a kill; writers racing for
    the same target (parallel sweep workers) each use their own temporary, and the last rename wins.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
