"""The default sink: a crash-safe row log in the run directory, and a reader for it.

Rows are appended to ``metrics.jsonl``, one strict JSON object per line (a value that is not finite —
NaN for "not defined at this step", or ±inf — is written as ``null`` and read back as NaN), flushed
after every row, so a run
killed at any moment leaves every completed row readable; a half-written last line is ignored by
:func:`read_table`. ``close`` also writes ``metrics.parquet`` (pyarrow installed) or ``metrics.csv``,
atomically. Resuming truncates the log to the rows the checkpoint had written, so a resumed run
produces the same table as an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import pandas as pd

from optprobe.errors import OptprobeError
from optprobe.files import write_atomic

LOG_NAME = "metrics.jsonl"


class TableSink:
    """Appends rows to ``run_dir/metrics.jsonl``; writes a columnar copy on close."""

    def __init__(self, run_dir: str | os.PathLike[str], keep_rows: int | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.run_dir / LOG_NAME
        if keep_rows is None:
            self.path.write_text("")
        else:
            _truncate(self.path, keep_rows)
        self._file = self.path.open("a", encoding="utf-8")

    def write(self, row: dict[str, Any]) -> None:
        self._file.write(_line(row))
        self._file.flush()

    def close(self) -> None:
        if self._file.closed:
            return
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        write_columnar(read_table(self.run_dir), self.run_dir)


def read_table(run_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """Every complete row of a run (finished or not) as a DataFrame, one row per measured step."""
    path = Path(run_dir) / LOG_NAME
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: is {run_dir} an optprobe run directory?")
    table = pd.DataFrame(_complete_rows(path))
    never_set = [c for c in table.columns if table[c].isna().all() and table[c].dtype == object]
    return table.astype(dict.fromkeys(never_set, float))


def write_columnar(table: pd.DataFrame, run_dir: Path) -> Path:
    """Write ``metrics.parquet`` (or ``metrics.csv`` without pyarrow) via a temporary file and a rename."""
    try:
        import pyarrow  # noqa: F401

        target, write = run_dir / "metrics.parquet", lambda p: table.to_parquet(p, index=False)
    except ImportError:
        target, write = run_dir / "metrics.csv", lambda p: table.to_csv(p, index=False)
    return write_atomic(target, write)


def _complete_rows(path: Path) -> list[dict[str, Any]]:
    """Every newline-terminated row; :class:`OptprobeError` naming the line when one is not a JSON object."""
    rows = []
    with path.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            if not raw.endswith(b"\n"):
                break  # the write in progress when the run was killed
            try:
                row = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                row = None
            if not isinstance(row, dict):
                raise OptprobeError(
                    f"{path}, line {number}, is not a row of optprobe's table (damaged file); to keep the "
                    f"{number - 1} rows before it, cut the file there: head -n {number - 1} {path} > "
                    f"{path}.kept && mv {path}.kept {path}"
                )
            rows.append(row)
    return rows


def _truncate(path: Path, keep_rows: int) -> None:
    rows = _complete_rows(path) if path.exists() else []
    if len(rows) < keep_rows:
        raise OptprobeError(
            f"{path} holds {len(rows)} complete rows but the checkpoint expects {keep_rows}: the run "
            "directory does not belong to this checkpoint; delete checkpoint.pt there to restart the run "
            "from step 0"
        )
    text = "".join(_line(r) for r in rows[:keep_rows])
    write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _line(row: dict[str, Any]) -> str:
    return json.dumps({k: _jsonable(v) for k, v in row.items()}, allow_nan=False) + "\n"


def _jsonable(value: Any) -> Any:
    """A plain Python scalar; None for a non-finite number (NaN or ±inf), which JSON cannot hold."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
