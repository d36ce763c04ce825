"""The report's findings table and compare's finding lines, computed from synthetic run directories."""

from __future__ import annotations

import math
import re
import sys
import types

import numpy as np
import pytest
from scipy import stats
from synthetic import synthetic_table, write_run

from optprobe.cli import main
from optprobe.findings import Check, Criterion, per_seed
from optprobe.report import build_report, load_runs
from optprobe.report.findings import experiment_findings, format_estimate, group_runs, short_finding, tally
from optprobe.report.verdicts import series

FINDING = "The final loss of SGDM is below a bound. A second sentence the table leaves out."
SEEDS = (0, 1, 2)


def _final_loss(run) -> float:
    return float(series(run.table, "loss").iloc[-1])


def _fake_test(runs, *, max_loss):
    """Final loss of sgdm across seeds, < max_loss."""
    est = per_seed(runs["sgdm"], _final_loss)
    return [Check("final loss of sgdm", est, Criterion("<", max_loss), f"{est.n} seeds of sgdm")]


@pytest.fixture
def fake_finding(monkeypatch):
    module = types.ModuleType("optprobe.findings.fake_exp")
    module.test = _fake_test
    monkeypatch.setitem(sys.modules, "optprobe.findings.fake_exp", module)
    return module


def _write(root, max_loss, experiment="fake_exp", **extra):
    for seed in SEEDS:
        for label in ("sgdm", "adamw"):
            write_run(
                root / experiment / f"{label}__seed{seed}",
                synthetic_table(steps=60, seed=10 * seed + (label == "adamw"), curvature=False),
                experiment=experiment, label=label, seed=seed, finding=FINDING,
                **({"criterion": {"max_loss": max_loss}, "finding_test": experiment} | extra),
            )  # fmt: skip
    return root


def _expected(root, experiment="fake_exp"):
    """The final losses of sgdm's seeds and their 95% t-interval, recomputed directly."""
    losses = [_final_loss(run) for run in load_runs([root / experiment]) if run.label == "sgdm"]
    low, high = stats.t.interval(0.95, len(losses) - 1, np.mean(losses), stats.sem(losses))
    return np.mean(losses), low, high


def test_seeds_of_a_label_are_grouped_in_seed_order(tmp_path, fake_finding):
    root = _write(tmp_path, 10.0)
    groups = group_runs(load_runs([root]))
    assert list(groups) == ["fake_exp"] and sorted(groups["fake_exp"]) == ["adamw", "sgdm"]
    assert [r.info["seed"] for r in groups["fake_exp"]["sgdm"]] == [0, 1, 2]


@pytest.mark.parametrize(("max_loss", "verdict"), [(10.0, "reproduced"), (0.0, "not reproduced")])
def test_findings_table_is_the_first_screen_and_computed_from_the_runs(
    tmp_path, fake_finding, max_loss, verdict
):
    root = _write(tmp_path / "runs", max_loss)
    mean, low, high = _expected(root)
    [item] = experiment_findings(load_runs([root]))
    est = item.result.checks[0].estimate
    assert (est.value, est.low, est.high, est.n) == pytest.approx((mean, low, high, 3))
    assert str(item.outcome) == verdict
    html = build_report([root], tmp_path / "report").read_text(encoding="utf-8")
    table = html[html.index("<h2>Findings</h2>") : html.index("Experiment:")]
    assert html.index("<h2>Findings</h2>") < html.index("Assumption report card")
    assert f'<span class="v v-{verdict.replace(" ", "-")}">{verdict}</span>' in table
    assert format_estimate(est) in table and f"&lt; {max_loss:g}" in table
    assert ">The final loss of SGDM is below a bound.</span></td>" in table  # the full finding is its title
    assert "3 seed(s) per run" in table
    assert f"<p class=\"tally\">1 finding: 1 {verdict}</p>" in table
    assert "sgdm ×3 seeds" in html and "mean of 3 seeds" not in html  # legends are inside the PNGs


def test_an_experiment_without_a_finding_test_is_not_measured_and_says_why(tmp_path):
    root = _write(tmp_path, 1.0, experiment="no_such_finding")
    [item] = experiment_findings(load_runs([root]))
    assert str(item.outcome) == "not measured" and "no finding test" in item.note
    html = build_report([root], tmp_path / "report").read_text(encoding="utf-8")
    assert "no finding test" in html[: html.index("Experiment:")]


def test_a_failing_finding_test_is_reported_not_raised(tmp_path, fake_finding):
    root = _write(tmp_path, 1.0)
    fake_finding.test = lambda runs, **criterion: [1 / 0]
    [item] = experiment_findings(load_runs([root]))
    assert str(item.outcome) == "not measured" and "ZeroDivisionError" in item.note


def test_runs_without_criterion_read_it_from_the_experiment_file(tmp_path, monkeypatch):
    """Runs made before run.json recorded the criterion use the experiment file's current one."""
    from optprobe.experiments.registry import get_experiment

    seen = {}

    def record(runs, **criterion):
        seen.update(criterion)
        return []

    module = types.ModuleType("optprobe.findings.convex_sanity")
    module.test = record
    monkeypatch.setitem(sys.modules, "optprobe.findings.convex_sanity", module)
    run = write_run(tmp_path / "convex_sanity" / "gd", synthetic_table(steps=20), experiment="convex_sanity",
                    label="gd", seed=0)  # fmt: skip
    [item] = experiment_findings(load_runs([run]))
    stored = get_experiment("convex_sanity")
    assert seen == stored.criterion and item.finding == stored.finding


def test_compare_prints_runs_then_one_finding_line_per_experiment(tmp_path, fake_finding, capsys):
    root = _write(tmp_path, 10.0)
    _write(tmp_path, 1.0, experiment="other_exp")
    assert main(["compare", str(root)]) == 0
    out = capsys.readouterr().out
    table, findings = out.split("findings (95% intervals across seeds):")
    assert len(table.strip().splitlines()) == 1 + 12 and "seed" in table.splitlines()[0]
    lines = findings.strip().splitlines()
    assert lines.pop() == "2 findings: 1 reproduced, 1 not measured"
    assert len(lines) == 2
    mean, low, high = _expected(root)
    assert re.match(r"fake_exp\s+reproduced\s+\|\s+final loss of sgdm = ", lines[0])
    assert f"{mean:.4g} [{low:.4g}, {high:.4g}] (n = 3), criterion < 10: reproduced" in lines[0]
    assert re.match(r"other_exp\s+not measured — no finding test", lines[1])


def test_compare_has_the_curvature_and_optimizer_verdicts():
    from optprobe.report.runs import COMPARE_KEYS

    for key in ("edge_of_stability", "relaxed_smoothness", "linf_geometry", "diagonal_uniformity",
                "random_scaling"):  # fmt: skip
        assert key in COMPARE_KEYS


def test_short_finding_and_estimate_formats():
    assert short_finding("A holds. B too.") == "A holds."
    long = "word " * 60
    assert short_finding(long, 30).endswith("…") and len(short_finding(long, 30)) <= 31
    from optprobe.findings import Estimate

    assert format_estimate(Estimate(1.0, -math.inf, math.inf, 1)) == "1 (n = 1: no interval)"
    assert format_estimate(Estimate(math.nan, math.nan, math.nan, 0)) == "—"


def test_the_tally_counts_each_verdict_in_a_fixed_order(tmp_path, fake_finding):
    _write(tmp_path, 0.0)
    _write(tmp_path, 1.0, experiment="other_exp")
    findings = experiment_findings(load_runs([tmp_path]))
    assert tally(findings) == "2 findings: 1 not reproduced, 1 not measured"
    assert tally([]) == "0 findings"
