"""Where a Probe's rows go: its run directory (``run.json`` and the table) and the user's sinks."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from optprobe.errors import OptprobeError
from optprobe.runinfo import update_run_info
from optprobe.sinks import Sink, TableSink
from optprobe.sinks.table import LOG_NAME


class RunOutput:
    """The run directory (prepared here; ``out_dir=None``: none) and the sinks every row goes to.

    ``if_exists``: "error", "overwrite" or "resume" (keep the rows already written); ``probe_info`` and
    ``run_info`` are merged into ``run.json`` (a key in both is an error).
    """

    def __init__(
        self,
        out_dir: str | os.PathLike[str] | None,
        if_exists: str,
        sinks: Sequence[Sink],
        probe_info: Mapping[str, Any],
        run_info: Mapping[str, Any] | None,
    ) -> None:
        self.sinks = list(sinks)
        self.rows_written = 0
        self.last_row: dict[str, Any] | None = None
        self._keep_rows: int | None = None  # rows of the table to keep when it is opened (None: none)
        self._table: TableSink | None = None
        self.run_dir = self._prepare_run_dir(out_dir, if_exists, probe_info, run_info)

    def _prepare_run_dir(
        self,
        out_dir: str | os.PathLike[str] | None,
        if_exists: str,
        probe_info: Mapping[str, Any],
        run_info: Mapping[str, Any] | None,
    ) -> Path | None:
        if if_exists not in ("error", "overwrite", "resume"):
            raise OptprobeError(f"if_exists must be 'error', 'overwrite' or 'resume', got {if_exists!r}")
        if out_dir is None:
            return None
        if str(out_dir) == "auto":
            out_dir = Path("runs") / time.strftime("probe-%Y%m%d-%H%M%S")
        run_dir = Path(out_dir)
        if (run_dir / LOG_NAME).exists() and if_exists == "error":
            raise OptprobeError(
                f"{run_dir} already holds an optprobe run; pass if_exists='resume' (and load_state_dict) to "
                "continue it, if_exists='overwrite' to replace it, or choose another out_dir"
            )
        self._keep_rows = None if if_exists != "resume" else _count_rows(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        update_run_info(run_dir, **probe_info, finished=False, **dict(run_info or {}))
        return run_dir

    def start_sinks(self, config: dict[str, Any]) -> None:
        """Hand the Probe's settings to the sinks that record them (an optional ``start`` method)."""
        for sink in self.sinks:
            if hasattr(sink, "start"):  # optional: trackers record the settings (and the βs of exp_* names)
                sink.start(config)

    def write(self, row: dict[str, Any]) -> None:
        """Send ``row`` to every sink, an infinite value first turned into NaN (in ``row`` itself)."""
        for key, value in row.items():  # an infinite metric is as undefined as a NaN one, in every row
            if isinstance(value, float) and math.isinf(value):
                row[key] = math.nan
        for sink in self._all_sinks():
            sink.write(row)
        self.rows_written += 1
        self.last_row = row

    def resume_at(self, rows_written: int) -> None:
        """Continue after a checkpoint's ``rows_written`` rows: the table keeps just those when reopened."""
        self.rows_written = rows_written
        if self._table is not None:
            self._table.close()
            self._table = None
        self._keep_rows = rows_written

    def close(self, **run_info: Any) -> None:
        """Close every sink, then record ``run_info`` in ``run.json``."""
        for sink in self._all_sinks():
            sink.close()
        if self.run_dir is not None:
            update_run_info(self.run_dir, **run_info)

    def table(self):  # -> pandas.DataFrame
        """Every row written so far, read back from the run directory."""
        from optprobe.sinks import read_table

        if self.run_dir is None:
            raise OptprobeError(
                "this Probe writes no run directory (out_dir=None); read your own sinks instead"
            )
        return read_table(self.run_dir)

    def _all_sinks(self) -> list[Sink]:
        if self._table is None and self.run_dir is not None:
            self._table = TableSink(self.run_dir, keep_rows=self._keep_rows)
        return ([self._table] if self._table is not None else []) + self.sinks


def _count_rows(run_dir: Path) -> int | None:
    from optprobe.sinks import read_table

    return len(read_table(run_dir)) if (run_dir / LOG_NAME).exists() else None
