"""Finding and loading run directories, and the one-row-per-run comparison behind ``optprobe compare``."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from optprobe.report.verdicts import Verdict, assess, series
from optprobe.runinfo import RUN_INFO, read_run_info
from optprobe.sinks.table import LOG_NAME, read_table

#: Verdicts shown as columns of :func:`compare`: convexity, smoothness and curvature, then the optimizer's.
COMPARE_KEYS = (
    "convexity_prev",
    "convexity_average",
    "convexity_ratio",
    "smoothness",
    "relaxed_smoothness",
    "edge_of_stability",
    "linf_geometry",
    "diagonal_uniformity",
    "update_correlation",
    "random_scaling",
)


@dataclass
class Run:
    """One run directory, read: its table, its run.json (empty when absent) and its report card."""

    path: Path
    table: pd.DataFrame
    info: dict[str, Any]
    verdicts: list[Verdict] = field(default_factory=list)

    @property
    def label(self) -> str:
        """run.json ``label``, else the directory name."""
        return str(self.info.get("label") or self.path.name)

    @property
    def experiment(self) -> str:
        """run.json ``experiment``, else "runs" (one group for plain user runs)."""
        return str(self.info.get("experiment") or "runs")


def find_run_dirs(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Run directories named by ``paths``: each is a run directory or a folder searched recursively.

    Order follows ``paths`` (and sorted names inside a folder); duplicates are dropped.
    """
    found: dict[Path, None] = {}
    for raw in paths:
        path = Path(raw)
        if (path / LOG_NAME).is_file():
            found[path] = None
        elif path.is_dir():
            found.update(dict.fromkeys(sorted(log.parent for log in path.rglob(LOG_NAME))))
        else:
            raise FileNotFoundError(f"{path} is neither a run directory (with {LOG_NAME}) nor a folder")
    if not found:
        raise FileNotFoundError(f"no {LOG_NAME} under {', '.join(map(str, paths))}")
    return list(found)


def load_run(run_dir: str | os.PathLike[str]) -> Run:
    """Read a run directory (finished or not) and assess it."""
    path = Path(run_dir)
    info = read_run_info(path) if (path / RUN_INFO).is_file() else {}
    table = read_table(path)
    return Run(path, table, info, assess(table, info))


def load_runs(run_dirs: Sequence[str | os.PathLike[str]]) -> list[Run]:
    """:func:`load_run` on every run directory found by :func:`find_run_dirs`."""
    return [load_run(d) for d in find_run_dirs(run_dirs)]


def _steps(table: pd.DataFrame) -> int:
    """Training steps a table covers: its last step row's index + 1 (an epoch_end row carries the next
    step's index, and rows are written only at measured steps)."""
    if "step" not in table or not len(table):
        return 0
    steps = table["step"][table["event"] == "step"] if "event" in table else table["step"]
    return int(steps.max()) + 1 if len(steps) else 0


def compare(run_dirs: Sequence[str | os.PathLike[str]]) -> pd.DataFrame:
    """One row per run: label, seed, experiment, steps, final losses and the key verdicts
    (:data:`COMPARE_KEYS`)."""
    return compare_runs(load_runs(run_dirs))


def compare_runs(runs: Sequence[Run]) -> pd.DataFrame:
    """:func:`compare` on runs already loaded."""
    rows = []
    for run in runs:
        loss, full = series(run.table, "loss"), series(run.table, "full_loss")
        verdicts = {v.key: str(v.verdict) for v in run.verdicts if v.key in COMPARE_KEYS}
        rows.append(
            {
                "label": run.label,
                "seed": run.info.get("seed", pd.NA),
                "experiment": run.experiment,
                "steps": _steps(run.table),
                "final_loss": float(loss.iloc[-1]) if len(loss) else float("nan"),
                "final_full_loss": float(full.iloc[-1]) if len(full) else float("nan"),
                "finished": bool(run.info.get("finished", False)),
                **verdicts,
            }
        )
    return pd.DataFrame(rows)
