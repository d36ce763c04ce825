"""The run's ``run.json``: configuration, versions and environment, so a run can be reproduced."""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from optprobe.errors import OptprobeError
from optprobe.files import write_atomic

RUN_INFO = "run.json"


def environment() -> dict[str, Any]:
    """Versions of Python, torch, numpy and optprobe, and the machine the run used."""
    import numpy as np
    import torch

    from optprobe import __version__

    return {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": np.__version__,
        "optprobe": __version__,
        "platform": platform.platform(),
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "git_commit": source_commit(),
        "argv": sys.argv,
    }


def source_commit() -> str | None:
    """The git commit of the optprobe source tree (``+dirty`` when its files differ from it), or None when
    optprobe is not imported from a git checkout (an installed wheel) or git is unavailable."""
    package = Path(__file__).resolve().parent
    if not any((parent / ".git").exists() for parent in package.parents):
        return None

    def git(*args: str) -> str | None:
        try:
            command = ["git", "-C", str(package), *args]
            done = subprocess.run(command, capture_output=True, text=True, timeout=5)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    top = git("rev-parse", "--show-toplevel")
    if top is None or not any(Path(top).resolve() / sub == package for sub in ("src/optprobe", "optprobe")):
        return None  # optprobe sits inside another project's repository (e.g. a virtualenv there)
    commit = git("rev-parse", "HEAD")
    if commit is None:
        return None
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", str(package))
    return commit + ("+dirty" if dirty else "")


def finite_or_null(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, ±inf) replaced by None, in nested dicts and lists too,
    so that it serialises as strict JSON (``null``) that every JSON reader accepts."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_or_null(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_null(v) for v in value]
    return value


def as_stored(value: Any) -> Any:
    """``value`` as run.json (or a checkpoint's JSON-like config) gives it back: tuples become lists,
    non-finite floats None, other objects their ``str``; compare settings in this form."""
    return json.loads(json.dumps(finite_or_null(value), default=str, allow_nan=False))


def changed_settings(
    recorded: Mapping[str, Any], wanted: Mapping[str, Any], ignore: Iterable[str] = ()
) -> list[str]:
    """"key: old -> new" for each setting of ``wanted`` that ``recorded`` holds with another value, compared
    as stored; a setting newer than the record is no change, nor is one named in ``ignore``."""
    recorded, wanted, ignore = as_stored(dict(recorded)), as_stored(dict(wanted)), set(ignore)
    return [
        f"{key}: {recorded[key]!r} -> {wanted[key]!r}"
        for key in wanted
        if key in recorded and recorded[key] != wanted[key] and key not in ignore
    ]


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write strict JSON (non-finite numbers as null) through a temporary file and a rename, so a reader
    never sees half a file."""
    text = json.dumps(finite_or_null(data), indent=2, default=str, allow_nan=False)
    write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def read_run_info(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The run's ``run.json`` as a dict; :class:`OptprobeError` saying what to do when it is damaged."""
    path = Path(run_dir) / RUN_INFO
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        info = exc
    if not isinstance(info, dict):
        what = f"is not JSON ({info})" if isinstance(info, Exception) else "is not a JSON object"
        raise OptprobeError(
            f"{path} {what}, so {Path(run_dir)} is a damaged run directory (its metrics.jsonl rows are "
            f"untouched); to redo the run, delete {Path(run_dir)} or run into a new --out"
        )
    return info


def update_run_info(run_dir: Path, **fields: Any) -> dict[str, Any]:
    """Merge ``fields`` into ``run.json`` (created with the environment when missing)."""
    path = run_dir / RUN_INFO
    info = read_run_info(run_dir) if path.exists() else {"created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    if "environment" not in info:
        info["environment"] = environment()  # once per run: it imports torch and asks git
    info.update(fields)
    write_json_atomic(path, info)
    return info


def divergence_expected(info: Mapping[str, Any]) -> bool:
    """Whether run.json's divergence was one the experiment declared (``on_divergence = "expected"``)."""
    record = info.get("divergence")
    return isinstance(record, dict) and record.get("policy") == "expected"


def divergence_message(run_dir: str | os.PathLike[str], info: dict[str, Any] | None = None) -> str | None:
    """"<run dir> diverged: the loss is … at step …" when run.json records a divergence, else None."""
    info = read_run_info(run_dir) if info is None else info
    record = info.get("divergence")
    if not isinstance(record, dict):
        return None
    if divergence_expected(info):
        return (
            f"{run_dir} diverged at step {record.get('step')} (loss {record.get('loss')}), as the experiment "
            "expects (on_divergence='expected'); the table holds every step up to it"
        )
    return (
        f"{run_dir} diverged: the loss is {record.get('loss')} at step {record.get('step')}, where training "
        f"stopped (on_divergence={record.get('policy')!r}); the table holds every step up to it. Lower lr "
        "(into a new --out), or set on_divergence='skip' to skip such steps"
    )
