"""Each experiment's finding as a computed verdict (see :mod:`optprobe.findings.base`).

The finding test of experiment ``NAME`` is the function ``test`` in ``optprobe/findings/NAME.py``:
``test(runs, **criterion) -> list[Check]``, where ``runs`` maps each run label to its seeds and
``criterion`` is the ``[criterion]`` table of the experiment file. An experiment file of your own can
reuse a shipped test with ``finding_test = "NAME"``.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from optprobe.findings.base import (
    Check,
    Criterion,
    Estimate,
    FindingResult,
    FindingTest,
    Outcome,
    Runs,
    across_seeds,
    combine,
    per_seed,
)

__all__ = [
    "Check",
    "Criterion",
    "Estimate",
    "FindingResult",
    "FindingTest",
    "MissingRun",
    "Outcome",
    "Runs",
    "across_seeds",
    "combine",
    "evaluate",
    "finding_test",
    "per_seed",
]


def finding_test(name: str) -> FindingTest | None:
    """The ``test`` function of ``optprobe.findings.<name>``, or None when the experiment has none."""
    if not name.isidentifier() or name in ("base",):
        return None
    try:
        module = importlib.import_module(f"optprobe.findings.{name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"optprobe.findings.{name}":
            return None
        raise
    return getattr(module, "test", None)


class MissingRun(KeyError):
    """A finding test asked for a run label that is not among the runs (not run, or not finished yet)."""

    def __str__(self) -> str:
        return f"no run {self.args[0]!r} among these run directories (run the whole experiment)"


class _ByLabel(dict):
    def __missing__(self, label: str) -> Any:
        raise MissingRun(label)


def evaluate(experiment: str, finding: str, runs: Runs, criterion: Mapping[str, Any],
             test_name: str | None = None) -> FindingResult:  # fmt: skip
    """Run the experiment's finding test on its runs; no test or no runs gives an empty result; a run
    label the test needs and the runs lack raises :class:`MissingRun`."""
    test = finding_test(test_name or experiment)
    checks = tuple(test(_ByLabel(runs), **criterion)) if test is not None and runs else ()
    return FindingResult(experiment, finding, checks)
