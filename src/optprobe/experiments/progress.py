"""Progress lines of a suite of runs, on stderr: run k of n with the elapsed time and an ETA, finished runs
skipped, pilot (reference x*) runs, and the report being built.

The ETA is Σ (estimates of the runs not yet done) × (measured / estimated seconds of the runs trained so
far), less the elapsed time of the run in training: the experiments' ``minutes`` until a run has finished,
then corrected by how fast this machine is.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence


def clock_text(seconds: float) -> str:
    """``m:ss``, or ``h:mm:ss`` from an hour on."""
    minutes, secs = divmod(round(max(seconds, 0.0)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class SuiteProgress:
    """One line per run of a suite (``estimates``: each run's estimated seconds, in the order they run)."""

    def __init__(
        self, estimates: Sequence[float], enabled: bool = True, clock: Callable[[], float] = time.perf_counter
    ) -> None:
        self._estimates = [float(e) for e in estimates]
        self._enabled = enabled
        self._clock = clock
        self._started = clock()
        self._k = 0  # runs begun (trained or skipped)
        self._run_started: float | None = None  # of the run in training
        self._measured = 0.0  # seconds of the runs trained so far
        self._estimated = 0.0  # their estimates
        self._name = ""
        self._report_started = 0.0

    def eta(self) -> tuple[float, float | None]:
        """(seconds left for the runs not yet done, measured/estimated ratio or None before a measurement)."""
        ratio = self._measured / self._estimated if self._estimated > 0 else None
        scale = 1.0 if ratio is None else ratio
        left = sum(self._estimates[self._k :]) * scale
        if self._run_started is not None:  # the run in training: its scaled estimate less its elapsed time
            left += max(self._estimates[self._k - 1] * scale - (self._clock() - self._run_started), 0.0)
        return left, ratio

    def start(self, name: str) -> None:
        """Run k of n (``experiment/label seed s``) begins training."""
        self._k, self._name = self._k + 1, name
        self._run_started = self._clock()
        left, ratio = self.eta()
        source = "from the experiments' minutes"
        if ratio is not None:
            source = f"estimates × {ratio:.2g}, from the runs so far"
        self._print(
            f"run {self._k} of {len(self._estimates)}: {name} · elapsed {clock_text(self._elapsed())} · "
            f"ETA {clock_text(left)} ({source})"
        )

    def done(self) -> None:
        """The run begun by :meth:`start` has finished (its time now corrects the ETA)."""
        if self._run_started is not None:
            self._measured += self._clock() - self._run_started
            self._estimated += self._estimates[self._k - 1]
            self._run_started = None

    def skip(self, run_dir: str | os.PathLike[str]) -> None:
        """Run k of n was finished before: nothing trained."""
        self._k += 1
        self._run_started = None
        self._print(f"run {self._k} of {len(self._estimates)}: skipped, finished: {run_dir}")

    def pilot(self) -> None:
        """The run begun last trains its reference x* first (a pilot run, cached for the runs sharing it)."""
        self._print(f"  {self._name}: training the reference x* first (a pilot run, cached for reuse)")

    def report_start(self, runs: int, out: str | os.PathLike[str]) -> None:
        self._report_started = self._clock()
        self._print(f"building the report of {runs} runs in {out} …")

    def report_done(self) -> None:
        self._print(
            f"report built in {clock_text(self._clock() - self._report_started)} · "
            f"total {clock_text(self._elapsed())}"
        )

    def _elapsed(self) -> float:
        return self._clock() - self._started

    def _print(self, line: str) -> None:
        if self._enabled:
            print(line, file=sys.stderr, flush=True)
