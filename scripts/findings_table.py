"""The README's experiment table column: each experiment's finding verdict and statistics, as Markdown.

    .venv/bin/optprobe run --all --out runs/all        # every experiment, its default seeds
    .venv/bin/python scripts/findings_table.py runs/all

Prints one row per experiment: the verdict, then each check's statistic with its 95% interval across
seeds, its criterion and its own verdict — all computed from the run tables by the experiments' finding
tests (optprobe.findings), exactly as the report's first screen shows them.
"""

from __future__ import annotations

import sys

from optprobe.report.findings import experiment_findings, format_estimate, verdict_text
from optprobe.report.runs import load_runs


def markdown(paths: list[str]) -> str:
    """``| experiment | verdict | statistics |`` rows for the runs under ``paths``."""
    head = "| experiment | verdict | measured statistic [95% CI across seeds] (n): criterion → verdict |"
    rows = [head, "|---|---|---|"]
    for item in experiment_findings(load_runs(paths)):
        checks = "<br>".join(
            f"{c.statistic} = {format_estimate(c.estimate)}: {c.criterion} → {c.outcome}"
            for c in item.result.checks
        )
        rows.append(f"| `{item.experiment}` | **{verdict_text(item)}** | {checks or '—'} |")
    return "\n".join(rows)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    print(markdown(sys.argv[1:]))
