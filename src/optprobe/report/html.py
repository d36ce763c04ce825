"""The HTML report: a self-contained page (inline CSS, figures as base64 PNG) plus ``figures/*.png|pdf``.

Layout: first the findings table, one row per experiment: its finding, each check's statistic with its
value, 95% interval and number of seeds, the criterion, and the computed verdict (reproduced / not
reproduced / inconclusive / not measured). Then, per experiment (run.json ``experiment``, or one group),
its finding, its checks in detail, its figures (the seeds of a run drawn as one curve with a band), and
the assumption report card of every run, collapsed; then the metadata of every run (runner fields,
probe config, model, versions, warnings).
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
import time
from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Any

from optprobe.findings import Check
from optprobe.report.figures import FIGURES, SEED_BAND, make_figures
from optprobe.report.findings import ExperimentFinding, experiment_findings, format_estimate, short_finding
from optprobe.report.runs import Run, load_runs
from optprobe.report.verdicts import Verdict

REPORT_NAME = "report.html"
#: run.json fields written by the experiment runner, shown in the metadata when present.
RUNNER_FIELDS = ("experiment", "label", "task", "optimizer", "lr", "seed", "full_batch", "random_scaling")

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1280px;
       color: #1d1d1f; line-height: 1.45; padding: 0 1em; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 2px solid #ddd; padding-bottom: 0.2em; margin-top: 2em; }
.meta { color: #666; font-size: 0.9em; }
table { border-collapse: collapse; width: 100%; margin: 0.6em 0 1.4em; font-size: 0.88em; }
th, td { border: 1px solid #ddd; padding: 0.35em 0.55em; text-align: left; vertical-align: top; }
th { background: #f3f3f5; }
td.num { font-family: ui-monospace, monospace; text-align: right; white-space: nowrap; }
td.detail { color: #555; font-size: 0.92em; }
.v { font-weight: 600; white-space: nowrap; border-radius: 4px; padding: 0.1em 0.45em; }
.v-holds { background: #d4f5dc; color: #0b6b27; }
.v-holds-with-factor-α { background: #fff1c2; color: #7a5a00; }
.v-fails { background: #fddcdc; color: #a01818; }
.v-inconclusive { background: #e8e8ee; color: #444; }
.v-not-measured { background: #fff; color: #999; font-weight: 400; }
.v-reproduced { background: #d4f5dc; color: #0b6b27; }
.v-not-reproduced { background: #fddcdc; color: #a01818; }
table.findings td.exp { font-weight: 600; white-space: nowrap; }
details.cards > summary { cursor: pointer; font-weight: 600; margin: 0.6em 0; }
.finding { background: #f5f8ff; border-left: 4px solid #4a74d9; padding: 0.5em 0.9em; margin: 0.8em 0; }
figure { margin: 1.2em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.88em; }
pre { background: #f6f6f6; padding: 0.6em; overflow-x: auto; font-size: 0.82em; }
"""


def build_report(run_dirs: Sequence[str | os.PathLike[str]], out_dir: str | os.PathLike[str]) -> Path:
    """Write ``out_dir/report.html`` and ``out_dir/figures/`` for the runs in ``run_dirs``; returns the page.

    ``run_dirs`` may name run directories or folders holding them (see
    :func:`~optprobe.report.runs.find_run_dirs`); unfinished runs are read up to their last complete row.
    """
    out = Path(out_dir)
    runs = load_runs(run_dirs)
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(run.experiment, []).append(run)
    findings = {item.experiment: item for item in experiment_findings(runs)}
    body = [
        "<h1>optprobe report</h1>",
        f'<p class="meta">{len(runs)} run(s), {len(groups)} experiment(s); '
        f"generated {escape(time.strftime('%Y-%m-%d %H:%M'))}</p>",
        "<h2>Findings</h2>",
        _findings_table(list(findings.values())),
        *(
            _experiment(name, members, findings.get(name), out / "figures")
            for name, members in groups.items()
        ),
        "<h2>Run metadata</h2>",
        *(_metadata(run) for run in runs),
    ]
    page = out / REPORT_NAME
    page.write_text(
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>optprobe report</title>'
        f"<style>{_CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n",
        encoding="utf-8",
    )
    return page


def _findings_table(findings: list[ExperimentFinding]) -> str:
    """One row block per experiment: finding, each check (statistic, estimate, criterion), verdict."""
    if not findings:
        return "<p>No experiment runs: a run with no run.json <code>experiment</code> has no finding.</p>"
    head = (
        '<table class="findings"><tr><th>experiment</th><th>finding</th><th>statistic</th>'
        "<th>value [95% interval] (n seeds)</th><th>criterion</th><th>check</th><th>verdict</th></tr>"
    )
    rows = "".join(_finding_rows(item) for item in findings)
    legend = (
        '<p class="meta">reproduced: the whole 95% interval meets the criterion; not reproduced: none of '
        "it does; inconclusive: the interval straddles the criterion (one seed gives no interval); "
        "a finding is reproduced when every check is. Every value is computed from the run tables.</p>"
    )
    return head + rows + "</table>" + legend


def _finding_rows(item: ExperimentFinding) -> str:
    checks = item.result.checks
    span = f' rowspan="{max(1, len(checks))}"'
    seeds = item.seeds[0] if item.seeds[0] == item.seeds[1] else f"{item.seeds[0]}–{item.seeds[1]}"
    lead = (
        f'<td class="exp"{span}><a href="#exp-{_slug(item.experiment)}">{escape(item.experiment)}</a>'
        f'<br><span class="meta">{seeds} seed(s) per run</span></td>'
        f'<td{span} title="{escape(item.finding)}">{escape(short_finding(item.finding))}</td>'
    )
    note = f'<br><span class="meta">{escape(item.note)}</span>' if item.note and checks else ""
    verdict = f"<td{span}>{_badge(str(item.outcome))}{note}</td>"
    if not checks:
        return f'<tr>{lead}<td colspan="4" class="detail">{escape(item.note)}</td>{verdict}</tr>'
    cells = [_check_cells(c) for c in checks]
    return f"<tr>{lead}{cells[0]}{verdict}</tr>" + "".join(f"<tr>{c}</tr>" for c in cells[1:])


def _check_cells(check: Check) -> str:
    return (
        f"<td>{escape(check.statistic)}</td><td class=\"num\">{escape(format_estimate(check.estimate))}</td>"
        f"<td>{escape(str(check.criterion))}</td><td>{_badge(str(check.outcome))}</td>"
    )


def _badge(verdict: str) -> str:
    return f'<span class="v v-{verdict.replace(" ", "-")}">{escape(verdict)}</span>'


def _card(run: Run) -> str:
    rows = "".join(_card_row(v) for v in run.verdicts)
    state = "" if run.info.get("finished", False) else " <em>(unfinished run)</em>"
    seed = f" · seed {run.info['seed']}" if "seed" in run.info else ""
    return (
        f'<h3>{escape(run.label)} <span class="meta">{escape(run.experiment)}{escape(seed)} · '
        f"{escape(str(run.path))}</span>"
        f"{state}</h3>\n<table><tr><th>assumption</th><th>statistic</th><th>value</th><th>criterion</th>"
        f"<th>verdict</th><th>detail</th></tr>{rows}</table>"
    )


def _card_row(v: Verdict) -> str:
    return (
        f"<tr><td>{escape(v.assumption)}</td><td>{escape(v.statistic)}</td>"
        f'<td class="num">{_fmt(v.value)}</td>'
        f"<td>{escape(v.criterion)}</td><td>{_badge(str(v.verdict))}</td>"
        f'<td class="detail">{escape(v.detail)}</td></tr>'
    )


def _experiment(name: str, runs: list[Run], finding: ExperimentFinding | None, figure_dir: Path) -> str:
    """The experiment's section: finding and its checks, figures, and its runs' report cards (collapsed)."""
    texts = dict.fromkeys(str(r.info["finding"]) for r in runs if r.info.get("finding"))
    if finding is not None and finding.finding:
        texts = {finding.finding: None}
    triples = [(_curve_label(r.label), r.table, r.info) for r in runs]
    saved = make_figures(triples, figure_dir, prefix=f"{_slug(name)}__")
    seeded = len({label for label, _, _ in triples}) < len(runs)
    labels = dict.fromkeys(r.label for r in runs)
    counts = {label: sum(r.label == label for r in runs) for label in labels}
    listed = ", ".join(f"{label} ×{n} seeds" if n > 1 else label for label, n in counts.items())
    parts = [
        f'<h2 id="exp-{_slug(name)}">Experiment: {escape(name)}</h2>',
        f'<p class="meta">runs: {escape(listed)}</p>',
    ]
    parts += [f'<p class="finding"><strong>Finding.</strong> {escape(f)}</p>' for f in texts]
    if finding is not None:
        parts.append(_checks(finding))
    for fig_name, png in saved.items():
        caption = (FIGURES[fig_name].__doc__ or "").strip().splitlines()[0]
        if seeded:
            caption += " " + SEED_BAND
        data = base64.b64encode(png.read_bytes()).decode("ascii")
        parts.append(
            f'<figure><img alt="{escape(fig_name)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{escape(caption)} (<code>figures/{escape(png.stem)}.pdf</code>)</figcaption>"
            "</figure>"
        )
    if not saved:
        parts.append("<p>No plottable metric in these runs.</p>")
    parts.append(
        f'<details class="cards"><summary>Assumption report cards ({len(runs)} run(s))</summary>'
        + "\n".join(_card(run) for run in runs)
        + "</details>"
    )
    return "\n".join(parts)


def _curve_label(label: str) -> str:
    """A sweep run's label without its seed (``sgdm__lr0.1_seed2`` → ``sgdm__lr0.1``): seeds are one curve."""
    return re.sub(r"_seed-?\d+$", "", label) if "__" in label else label


def _checks(finding: ExperimentFinding) -> str:
    """The finding's verdict and each check with its detail (what was measured on which runs)."""
    head = f"<p><strong>Verdict:</strong> {_badge(str(finding.outcome))}"
    head += f" {escape(finding.note)}</p>" if finding.note else "</p>"
    items = "".join(
        f"<li>{_badge(str(c.outcome))} {escape(c.statistic)} = {escape(format_estimate(c.estimate))}, "
        f"criterion {escape(str(c.criterion))}"
        + (f'<br><span class="detail">{escape(c.detail)}</span>' if c.detail else "")
        + "</li>"
        for c in finding.result.checks
    )
    return head + (f"<ul>{items}</ul>" if items else "")


def _metadata(run: Run) -> str:
    info = run.info
    fields: dict[str, Any] = {k: info[k] for k in RUNNER_FIELDS if k in info}
    fields["finished"] = info.get("finished", "unknown (no run.json)" if not info else False)
    fields["rows"] = len(run.table)
    if "model" in info:
        fields["parameters"] = info["model"].get("parameters")
        fields["layers"] = len(info["model"].get("layers", []))
    env = info.get("environment", {})
    fields |= {k: env[k] for k in ("python", "torch", "numpy", "optprobe", "platform", "gpu") if env.get(k)}
    if info.get("warnings"):
        fields["warnings"] = ", ".join(f"{k}: {n}" for k, n in info["warnings"].items())
    rows = "".join(f"<tr><th>{escape(k)}</th><td>{escape(str(v))}</td></tr>" for k, v in fields.items())
    config = escape(json.dumps(info.get("probe_config", {}), indent=1, default=str))
    seed = f" (seed {info['seed']})" if "seed" in info else ""
    return (
        f'<details><summary><strong>{escape(run.label)}</strong>{escape(seed)} <span class="meta">'
        f"{escape(str(run.path))}"
        f"</span></summary><table>{rows}</table><p>probe config</p><pre>{config}</pre></details>"
    )


def _fmt(value: float) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4g}"


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "runs"
