"""Turn run directories into an assumption report card, figures and a self-contained HTML report.

``assess``, ``compare`` and ``find_run_dirs`` need only pandas (and scipy for two checks);
``build_report`` and the figures need matplotlib (the ``report`` extra), imported on first use.
"""

from __future__ import annotations

from typing import Any

from optprobe.report.runs import Run, compare, find_run_dirs, load_run, load_runs
from optprobe.report.verdicts import Label, Verdict, assess

__all__ = [
    "Label",
    "Run",
    "Verdict",
    "assess",
    "build_report",
    "compare",
    "find_run_dirs",
    "load_run",
    "load_runs",
]


def __getattr__(name: str) -> Any:
    if name == "build_report":
        from optprobe.report.html import build_report

        return build_report
    raise AttributeError(f"module 'optprobe.report' has no attribute {name!r}")
