"""The HTML report: a self-contained page (inline CSS, figures as base64 PNG) plus ``figures/*.png|pdf``.

Layout: a header with the optprobe version and git commit that built the page and the runs' wall time;
the findings table, one row block per experiment: its verdict (reproduced / not reproduced / inconclusive
/ not measured) and finding, each check's statistic with its value, 95% interval and number of seeds, the
criterion and the check's verdict. Then, per experiment (run.json ``experiment``, or one group), its
finding, its checks in detail, its figures (its paper's layout first, see
:func:`~optprobe.report.figures.figure_functions`), and the assumption report card of every run,
collapsed: each row with a plain explanation and its paper section, unmeasured rows folded with their
reasons; then the metadata of every run (runner fields, probe config, model, versions, commit, warnings).
Text such as ``x_{t−1}`` is rendered as x<sub>t−1</sub>; tables wrap at words down to ~700 px.
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
from optprobe.report.figures import SEED_BAND, figure_functions, make_figures
from optprobe.report.findings import (
    ExperimentFinding,
    experiment_findings,
    format_estimate,
    short_finding,
    tally,
)
from optprobe.report.notation import html_math, unicode_math
from optprobe.report.runs import Run, load_runs
from optprobe.report.verdicts import ABOUT, Label, Verdict

REPORT_NAME = "report.html"
#: run.json fields written by the experiment runner, shown in the metadata when present.
RUNNER_FIELDS = ("experiment", "label", "task", "optimizer", "lr", "seed", "full_batch", "random_scaling")

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1280px;
       color: #1d1d1f; line-height: 1.45; padding: 0 1em; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 2px solid #ddd; padding-bottom: 0.2em; margin-top: 2em; }
h3 { overflow-wrap: anywhere; }
.meta { color: #666; font-size: 0.9em; }
.tally { font-size: 1.1em; font-weight: 600; }
table { border-collapse: collapse; width: 100%; margin: 0.6em 0 1.4em; font-size: 0.88em; }
th, td { border: 1px solid #ddd; padding: 0.35em 0.55em; text-align: left; vertical-align: top;
         overflow-wrap: break-word; }
td.num, td code, td .path { overflow-wrap: anywhere; }
th { background: #f3f3f5; }
td.num { font-family: ui-monospace, monospace; text-align: right; white-space: nowrap; }
td.detail, .detail { color: #555; font-size: 0.92em; }
.about { color: #555; font-size: 0.9em; display: block; margin-top: 0.15em; }
.source { color: #888; font-size: 0.85em; font-style: italic; display: block; }
.v { font-weight: 600; white-space: nowrap; border-radius: 4px; padding: 0.1em 0.45em;
     display: inline-block; }
.v-holds { background: #d4f5dc; color: #0b6b27; }
.v-holds-with-factor-α { background: #fff1c2; color: #7a5a00; }
.v-fails { background: #fddcdc; color: #a01818; }
.v-inconclusive { background: #e8e8ee; color: #444; }
.v-not-measured { background: #fff; color: #999; font-weight: 400; }
.v-reproduced { background: #d4f5dc; color: #0b6b27; }
.v-not-reproduced { background: #fddcdc; color: #a01818; }
table.findings td.exp a { font-weight: 600; }
table.findings td.exp .short { font-weight: 400; }
details > summary { cursor: pointer; }
details.cards > summary { font-weight: 600; margin: 0.6em 0; }
details.unmeasured { margin: -0.8em 0 1.2em; font-size: 0.88em; color: #555; }
details.unmeasured li { margin: 0.15em 0; }
.finding { background: #f5f8ff; border-left: 4px solid #4a74d9; padding: 0.5em 0.9em; margin: 0.8em 0; }
figure { margin: 1.2em 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.88em; }
pre { background: #f6f6f6; padding: 0.6em; overflow-x: auto; font-size: 0.82em; max-width: 100%;
      white-space: pre-wrap; overflow-wrap: anywhere; }
code { overflow-wrap: anywhere; }
@media (max-width: 820px) {
  body { padding: 0 0.5em; } table { font-size: 0.8em; } th, td { padding: 0.25em 0.3em; }
  .v, td.num { white-space: normal; } td.num { text-align: left; }
}
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
        f'<p class="meta">{len(runs)} run(s), {len(groups)} experiment(s); {_wall_times(runs)}<br>'
        f"generated {escape(time.strftime('%Y-%m-%d %H:%M'))} by {_generator()}</p>",
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


def _text(text: str) -> str:
    """Plain text for the page: escaped, with subscripts such as x_{t−1} as x<sub>t−1</sub>."""
    return html_math(escape(text))


def _generator() -> str:
    """optprobe's version and the git commit of its source tree (when it is a checkout)."""
    from optprobe import __version__
    from optprobe.runinfo import source_commit

    commit = source_commit()
    return f"optprobe {escape(__version__)}" + (f" (commit {escape(commit)})" if commit else "")


def _wall_times(runs: Sequence[Run]) -> str:
    """Total training wall time of the runs that record it (run.json ``wall_seconds``)."""
    recorded = (r.info.get("wall_seconds") for r in runs)
    times = [float(t) for t in recorded if isinstance(t, (int, float))]
    if not times:
        return "wall time not recorded"
    some = "" if len(times) == len(runs) else f" ({len(times)} of {len(runs)} runs record it)"
    return f"total wall time {_duration(sum(times))}{some}"


def _duration(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if minutes else f"{seconds:.1f} s"


def _findings_table(findings: list[ExperimentFinding]) -> str:
    """One row block per experiment: experiment, verdict and finding, then each check (statistic, estimate,
    criterion, check verdict); five columns, so that the table wraps at words on a narrow screen."""
    if not findings:
        return "<p>No experiment runs: a run with no run.json <code>experiment</code> has no finding.</p>"
    head = (
        '<table class="findings"><tr><th>experiment: verdict, finding</th><th>statistic</th>'
        "<th>value [95% interval] (n seeds)</th><th>criterion</th><th>check</th></tr>"
    )
    rows = "".join(_finding_rows(item) for item in findings)
    legend = (
        '<p class="meta">reproduced: the whole 95% interval meets the criterion; not reproduced: none of '
        "it does; inconclusive: the interval straddles the criterion (one seed gives no interval); "
        "a finding is reproduced when every check is. Every value is computed from the run tables.</p>"
    )
    return f'<p class="tally">{escape(tally(findings))}</p>' + head + rows + "</table>" + legend


def _finding_rows(item: ExperimentFinding) -> str:
    checks = item.result.checks
    span = f' rowspan="{max(1, len(checks))}"'
    seeds = item.seeds[0] if item.seeds[0] == item.seeds[1] else f"{item.seeds[0]}–{item.seeds[1]}"
    note = f"; {escape(item.note)}" if item.note and checks else ""
    lead = (
        f'<td class="exp"{span} title="{escape(unicode_math(item.finding))}">'
        f'<a href="#exp-{_slug(item.experiment)}">{escape(item.experiment)}</a> {_badge(str(item.outcome))}'
        f'<br><span class="meta">{seeds} seed(s) per run{note}</span>'
        f'<br><span class="short">{_text(short_finding(item.finding))}</span></td>'
    )
    if not checks:
        return f'<tr>{lead}<td colspan="4" class="detail">{escape(item.note)}</td></tr>'
    cells = [_check_cells(c) for c in checks]
    return f"<tr>{lead}{cells[0]}</tr>" + "".join(f"<tr>{c}</tr>" for c in cells[1:])


def _check_cells(check: Check) -> str:
    return (
        f"<td>{_text(check.statistic)}</td><td class=\"num\">{escape(format_estimate(check.estimate))}</td>"
        f"<td>{_text(str(check.criterion))}</td><td>{_badge(str(check.outcome))}</td>"
    )


def _badge(verdict: str) -> str:
    return f'<span class="v v-{verdict.replace(" ", "-")}">{escape(verdict)}</span>'


def _card(run: Run) -> str:
    """The run's report card: measured rows in a table, "not measured" rows collapsed with their reasons."""
    measured = [v for v in run.verdicts if v.verdict is not Label.NOT_MEASURED]
    missing = [v for v in run.verdicts if v.verdict is Label.NOT_MEASURED]
    state = "" if run.info.get("finished", False) else " <em>(unfinished run)</em>"
    seed = f" · seed {run.info['seed']}" if "seed" in run.info else ""
    head = (
        f'<h3>{escape(run.label)} <span class="meta">{escape(run.experiment)}{escape(seed)} · '
        f"{escape(str(run.path))}</span>{state}</h3>\n"
    )
    table = ""
    if measured:
        rows = "".join(_card_row(v) for v in measured)
        table = (
            "<table><tr><th>assumption</th><th>statistic = value</th><th>criterion</th><th>verdict</th>"
            f"<th>detail</th></tr>{rows}</table>"
        )
    if missing:
        items = "".join(
            f"<li><strong>{_text(v.assumption)}</strong>: {_text(v.detail)}</li>" for v in missing
        )
        table += (
            f'<details class="unmeasured"><summary>{len(missing)} assumption(s) not measured in this run'
            f"</summary><ul>{items}</ul></details>"
        )
    return head + (table or "<p>No assumption could be checked on this table.</p>")


def _card_row(v: Verdict) -> str:
    about = ABOUT.get(v.key)
    explain = (
        f'<span class="about">{_text(about.plain)}</span><span class="source">{_text(about.source)}</span>'
        if about
        else ""
    )
    return (
        f"<tr><td>{_text(v.assumption)}{explain}</td>"
        f'<td>{_text(v.statistic)} = <span class="num">{_fmt(v.value)}</span></td>'
        f"<td>{_text(v.criterion)}</td><td>{_badge(str(v.verdict))}</td>"
        f'<td class="detail">{_text(v.detail)}</td></tr>'
    )


def _experiment(name: str, runs: list[Run], finding: ExperimentFinding | None, figure_dir: Path) -> str:
    """The experiment's section: finding and its checks, figures, and its runs' report cards (collapsed)."""
    texts = dict.fromkeys(str(r.info["finding"]) for r in runs if r.info.get("finding"))
    if finding is not None and finding.finding:
        texts = {finding.finding: None}
    triples = [(_curve_label(r.label), r.table, r.info) for r in runs]
    saved = make_figures(triples, figure_dir, prefix=f"{_slug(name)}__", experiment=name)
    functions = figure_functions(name)
    seeded = len({label for label, _, _ in triples}) < len(runs)
    labels = dict.fromkeys(r.label for r in runs)
    counts = {label: sum(r.label == label for r in runs) for label in labels}
    listed = ", ".join(f"{label} ×{n} seeds" if n > 1 else label for label, n in counts.items())
    parts = [
        f'<h2 id="exp-{_slug(name)}">Experiment: {escape(name)}</h2>',
        f'<p class="meta">runs: {escape(listed)}</p>',
    ]
    parts += [f'<p class="finding"><strong>Finding.</strong> {_text(f)}</p>' for f in texts]
    if finding is not None:
        parts.append(_checks(finding))
    for fig_name, png in saved.items():
        caption = _caption(functions[fig_name].__doc__ or "")
        if seeded:
            caption += " " + SEED_BAND
        data = base64.b64encode(png.read_bytes()).decode("ascii")
        parts.append(
            f'<figure><img alt="{escape(fig_name)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{_text(caption)} (<code>figures/{escape(png.stem)}.pdf</code>)</figcaption>"
            "</figure>"
        )
    if not saved:
        parts.append("<p>No plottable metric in these runs.</p>")
    parts.append(
        f'<details class="cards"><summary>Assumption report cards of {escape(name)} ({len(runs)} run(s)): '
        "which textbook assumptions hold along each run</summary>"
        + "\n".join(_card(run) for run in runs)
        + "</details>"
    )
    return "\n".join(parts)


def _caption(doc: str) -> str:
    """A figure function's docstring up to its first blank line, as one line."""
    return " ".join(doc.strip().split("\n\n", 1)[0].split())


def _curve_label(label: str) -> str:
    """A sweep run's label without its seed (``sgdm__lr0.1_seed2`` → ``sgdm__lr0.1``): seeds are one curve."""
    return re.sub(r"_seed-?\d+$", "", label) if "__" in label else label


def _checks(finding: ExperimentFinding) -> str:
    """The finding's verdict and each check with its detail (what was measured on which runs)."""
    head = f"<p><strong>Verdict:</strong> {_badge(str(finding.outcome))}"
    head += f" {escape(finding.note)}</p>" if finding.note else "</p>"
    items = "".join(
        f"<li>{_badge(str(c.outcome))} {_text(c.statistic)} = {escape(format_estimate(c.estimate))}, "
        f"criterion {_text(str(c.criterion))}"
        + (f'<br><span class="detail">{_text(c.detail)}</span>' if c.detail else "")
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
    if isinstance(info.get("wall_seconds"), (int, float)):
        fields["wall time"] = _duration(float(info["wall_seconds"]))
    keys = ("optprobe", "git_commit", "python", "torch", "numpy", "platform", "gpu")
    fields |= {k: env[k] for k in keys if env.get(k)}
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
