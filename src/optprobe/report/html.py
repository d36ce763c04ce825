"""The HTML report: a self-contained page (inline CSS, figures as base64 PNG) plus ``figures/*.png|pdf``.

Layout: the assumption report card of every run at the top; then, per experiment (run.json
``experiment``, or one group), its finding and its figures with the runs overlaid; then the metadata
of every run (runner fields, probe config, model, versions, warnings).
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

from optprobe.report.figures import FIGURES, make_figures
from optprobe.report.runs import Run, load_runs
from optprobe.report.verdicts import Verdict

REPORT_NAME = "report.html"
#: run.json fields written by the experiment runner, shown in the metadata when present.
RUNNER_FIELDS = ("experiment", "label", "task", "optimizer", "lr", "seed", "full_batch", "random_scaling")

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1100px;
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
    body = [
        "<h1>optprobe report</h1>",
        f'<p class="meta">{len(runs)} run(s), {len(groups)} experiment(s); '
        f"generated {escape(time.strftime('%Y-%m-%d %H:%M'))}</p>",
        "<h2>Assumption report card</h2>",
        *(_card(run) for run in runs),
        *(_experiment(name, members, out / "figures") for name, members in groups.items()),
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


def _card(run: Run) -> str:
    rows = "".join(_card_row(v) for v in run.verdicts)
    state = "" if run.info.get("finished", False) else " <em>(unfinished run)</em>"
    return (
        f'<h3>{escape(run.label)} <span class="meta">{escape(run.experiment)} · '
        f"{escape(str(run.path))}</span>"
        f"{state}</h3>\n<table><tr><th>assumption</th><th>statistic</th><th>value</th><th>criterion</th>"
        f"<th>verdict</th><th>detail</th></tr>{rows}</table>"
    )


def _card_row(v: Verdict) -> str:
    css = "v-" + str(v.verdict).replace(" ", "-")
    return (
        f"<tr><td>{escape(v.assumption)}</td><td>{escape(v.statistic)}</td>"
        f'<td class="num">{_fmt(v.value)}</td>'
        f'<td>{escape(v.criterion)}</td><td><span class="v {css}">{escape(str(v.verdict))}</span></td>'
        f'<td class="detail">{escape(v.detail)}</td></tr>'
    )


def _experiment(name: str, runs: list[Run], figure_dir: Path) -> str:
    findings = dict.fromkeys(str(r.info["finding"]) for r in runs if r.info.get("finding"))
    saved = make_figures([(r.label, r.table) for r in runs], figure_dir, prefix=f"{_slug(name)}__")
    parts = [
        f"<h2>Experiment: {escape(name)}</h2>",
        f'<p class="meta">runs: {escape(", ".join(r.label for r in runs))}</p>',
    ]
    parts += [f'<p class="finding"><strong>Finding.</strong> {escape(f)}</p>' for f in findings]
    for fig_name, png in saved.items():
        caption = (FIGURES[fig_name].__doc__ or "").strip().splitlines()[0]
        data = base64.b64encode(png.read_bytes()).decode("ascii")
        parts.append(
            f'<figure><img alt="{escape(fig_name)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{escape(caption)} (<code>figures/{escape(png.stem)}.pdf</code>)</figcaption>"
            "</figure>"
        )
    if not saved:
        parts.append("<p>No plottable metric in these runs.</p>")
    return "\n".join(parts)


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
    return (
        f'<details><summary><strong>{escape(run.label)}</strong> <span class="meta">{escape(str(run.path))}'
        f"</span></summary><table>{rows}</table><p>probe config</p><pre>{config}</pre></details>"
    )


def _fmt(value: float) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4g}"


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "runs"
