"""Finding verdicts of run directories: each experiment's finding test run on its runs, seeds together.

Runs are grouped by run.json ``experiment``, then by ``label`` (the seeds of one run share it), and the
experiment's test (:func:`optprobe.findings.evaluate`) is called with the ``finding``, ``criterion`` and
``finding_test`` recorded in run.json, or, for runs that predate them, those of the experiment's file.
Runs with no ``experiment`` (a user's own Probe runs) have no finding and are left out.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from optprobe.findings import Estimate, FindingResult, MissingRun, Outcome, evaluate, finding_test
from optprobe.report.runs import Run

#: A finding is shown up to its first sentence, cut to this many characters.
SHORT_FINDING = 150


@dataclass(frozen=True)
class ExperimentFinding:
    """An experiment's finding verdict, with why nothing was measured (``note``) when that is so."""

    experiment: str
    result: FindingResult
    seeds: tuple[int, int]  # fewest and most seeds of a run label
    note: str = ""

    @property
    def outcome(self) -> Outcome:
        return self.result.outcome

    @property
    def finding(self) -> str:
        return self.result.finding


def group_runs(runs: Sequence[Run]) -> dict[str, dict[str, list[Run]]]:
    """experiment → run label → its runs in seed order; a second run with the same label and seed is
    dropped (e.g. a folder holding the same run twice)."""
    groups: dict[str, dict[str, dict[int, Run]]] = {}
    for run in runs:
        if not run.info.get("experiment"):
            continue
        seeds = groups.setdefault(run.experiment, {}).setdefault(run.label, {})
        seeds.setdefault(int(run.info.get("seed", 0)), run)
    return {
        exp: {label: [seeds[s] for s in sorted(seeds)] for label, seeds in labels.items()}
        for exp, labels in groups.items()
    }


def experiment_findings(runs: Sequence[Run]) -> list[ExperimentFinding]:
    """The finding verdict of every experiment among ``runs`` (in their order)."""
    return [_evaluate(name, labels) for name, labels in group_runs(runs).items()]


def _evaluate(name: str, labels: Mapping[str, Sequence[Run]]) -> ExperimentFinding:
    finding, criterion, test_name = _settings(name, next(iter(labels.values()))[0].info)
    counts = [len(seeds) for seeds in labels.values()]
    seeds = (min(counts), max(counts))
    if finding_test(test_name) is None:
        empty = FindingResult(name, finding, ())
        return ExperimentFinding(name, empty, seeds, f"no finding test (optprobe.findings.{test_name})")
    try:
        result = evaluate(name, finding, labels, criterion, test_name)
    except MissingRun as exc:
        return ExperimentFinding(name, FindingResult(name, finding, ()), seeds, str(exc))
    except Exception as exc:  # noqa: BLE001 - one failing test must not hide the other experiments
        failed = FindingResult(name, finding, ())
        return ExperimentFinding(name, failed, seeds, f"the finding test failed: {type(exc).__name__}: {exc}")
    note = "" if result.checks else "the finding test returned no check"
    return ExperimentFinding(name, result, seeds, note)


def _settings(name: str, info: Mapping[str, Any]) -> tuple[str, dict[str, Any], str]:
    """(finding, criterion, test name) from run.json, else from the experiment's current file."""
    finding, criterion, test_name = info.get("finding"), info.get("criterion"), info.get("finding_test")
    if not (finding and criterion and test_name):
        stored = _experiment_file(name)
        if stored is not None:
            finding = finding or stored.finding
            criterion = criterion or stored.criterion
            test_name = test_name or stored.finding_test or name
    return str(finding or ""), dict(criterion or {}), str(test_name or name)


def _experiment_file(name: str) -> Any:
    from optprobe.errors import OptprobeError
    from optprobe.experiments.registry import get_experiment

    try:
        return get_experiment(name)
    except OptprobeError:
        return None


def short_finding(text: str, limit: int = SHORT_FINDING) -> str:
    """The finding's first sentence, cut at a word to at most ``limit`` characters (… when cut)."""
    first = text.strip().split(". ", 1)[0].rstrip(".")
    first = first + "." if first else ""
    if len(first) <= limit:
        return first
    return first[:limit].rsplit(" ", 1)[0].rstrip(",;:") + "…"


def format_estimate(est: Estimate) -> str:
    """``value [low, high] (n = k)``; one sample has no interval; "—" when not measured."""
    if not est.measured:
        return "—"
    if not (math.isfinite(est.low) and math.isfinite(est.high)):
        return f"{est.value:.4g} (n = {est.n}: no interval)"
    return f"{est.value:.4g} [{est.low:.4g}, {est.high:.4g}] (n = {est.n})"


def verdict_text(item: ExperimentFinding) -> str:
    """The experiment's verdict, with the reason when nothing was measured."""
    return f"{item.outcome} — {item.note}" if item.note else str(item.outcome)


def tally(findings: Sequence[ExperimentFinding]) -> str:
    """"12 findings: 10 reproduced, 2 not reproduced": how many experiments got each verdict."""
    counts = Counter(item.outcome for item in findings)
    parts = [f"{counts[outcome]} {outcome}" for outcome in Outcome if counts[outcome]]
    head = f"{len(findings)} finding{'' if len(findings) == 1 else 's'}"
    return f"{head}: {', '.join(parts)}" if parts else head


def finding_lines(findings: Sequence[ExperimentFinding]) -> list[str]:
    """One line per experiment: its verdict, then each check's statistic, estimate, criterion, verdict."""
    width = max((len(f.experiment) for f in findings), default=0)
    lines = []
    for item in findings:
        checks = "; ".join(
            f"{c.statistic} = {format_estimate(c.estimate)}, criterion {c.criterion}: {c.outcome}"
            for c in item.result.checks
        )
        head = f"{item.experiment:<{width}}  {verdict_text(item)}"
        lines.append(f"{head}  |  {checks}" if checks else head)
    return lines
