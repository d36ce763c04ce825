"""Runs a suite (one or more experiments × their seeds) run by run, with :class:`SuiteProgress` lines."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path

from optprobe.errors import OptprobeError
from optprobe.experiments.config import ExperimentConfig, estimated_run_seconds
from optprobe.experiments.progress import SuiteProgress
from optprobe.runinfo import RUN_INFO, read_run_info


def run_suite(
    experiments: Sequence[ExperimentConfig], out_dir: str | os.PathLike[str], device: str = "cpu",
    progress: bool = True, lines: SuiteProgress | None = None,
) -> list[Path]:  # fmt: skip
    """Run (or resume, or skip when finished) every run × seed of ``experiments`` into ``out_dir``; returns
    their run directories. ``progress`` shows the progress bars and, unless ``lines`` is given, the lines."""
    from optprobe.experiments import runner

    plan = [(e, run, Path(out_dir) / e.name / name) for e in experiments for run, name in runner.seed_runs(e)]
    if lines is None:
        lines = SuiteProgress([estimated_run_seconds(e) for e, _, _ in plan], enabled=progress)
    run_dirs: list[Path] = []
    current = None
    for experiment, run, run_dir in plan:
        if experiment is not current:
            print(f"== {experiment.name}: {experiment.title}", flush=True)
            current = experiment
        finished = _finished(run_dir)
        if not finished:
            lines.start(f"{experiment.name}/{run.label} seed {run.seed}")
        run_dirs.append(runner.run_one(run, run_dir, experiment, device, progress, on_pilot=lines.pilot))
        if finished:  # said after run_one, which refuses a finished run of another configuration
            lines.skip(run_dir)
        lines.done()
    return run_dirs


def _finished(run_dir: Path) -> bool:
    """Whether ``run_dir``'s run.json says the run finished (a damaged one is for the runner to report)."""
    with contextlib.suppress(OptprobeError, OSError):
        return (run_dir / RUN_INFO).is_file() and bool(read_run_info(run_dir).get("finished"))
    return False
