"""build_report, compare and find_run_dirs on synthetic run directories, finished or not."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
from synthetic import synthetic_table, write_run

from optprobe.report import build_report, compare, find_run_dirs

FINDING = "SGDM and AdamW stay convex on average although single steps are not."


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    for label, seed in (("sgdm", 0), ("adamw", 1)):
        write_run(
            root / "convexity" / label,
            synthetic_table(steps=90, seed=seed),
            experiment="local_convexity",
            label=label,
            finding=FINDING,
            random_scaling=label == "adamw",
        )
    return root


def test_report_has_findings_first_then_cards_per_experiment_and_no_external_resource(tmp_path, runs):
    page = build_report([runs], tmp_path / "report")
    html = page.read_text(encoding="utf-8")
    assert page == tmp_path / "report" / "report.html"
    findings, experiment, card, metadata = (
        html.index(s) for s in ("<h2>Findings</h2>", "Experiment:", "Assumption report card", "Run metadata")
    )
    assert findings < experiment < card < metadata
    assert '<details class="cards">' in html
    assert "local_convexity" in html and FINDING in html
    assert html.count("data:image/png;base64,") >= 8
    text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", html)  # base64 may spell "http" by chance
    assert "http" not in text and not re.search(r'(src|href)="(?!data:|#)', html)
    assert 'class="v v-holds-with-factor-α"' in html and 'class="v v-fails"' in html
    figures = tmp_path / "report" / "figures"
    assert {p.suffix for p in figures.iterdir()} == {".png", ".pdf"}


def test_report_on_an_unfinished_run_without_run_json(tmp_path):
    run = write_run(tmp_path / "live", synthetic_table(steps=30, curvature=False), truncate_last=True)
    (run / "run.json").unlink()
    html = build_report([run], tmp_path / "out").read_text(encoding="utf-8")
    assert "(unfinished run)" in html and "data:image/png;base64," in html
    assert "Experiment: runs" in html  # a plain run: one group


def test_compare_gives_one_row_per_run_with_key_verdicts(runs, tmp_path):
    unfinished = write_run(tmp_path / "live", synthetic_table(steps=30, curvature=False), truncate_last=True)
    table = compare([runs, unfinished])
    assert list(table["label"]) == ["adamw", "sgdm", "live"]
    assert list(table["finished"]) == [True, True, False]
    assert list(table["steps"]) == [90, 90, 30]
    assert set(table["convexity_ratio"]) == {"holds with factor α"}
    assert table["final_loss"].notna().all()


def test_find_run_dirs_accepts_runs_and_parents_and_rejects_missing_paths(runs, tmp_path):
    sgdm = runs / "convexity" / "sgdm"
    assert find_run_dirs([runs]) == [runs / "convexity" / "adamw", sgdm]
    assert find_run_dirs([sgdm, runs]) == [sgdm, runs / "convexity" / "adamw"]
    with pytest.raises(FileNotFoundError, match="neither a run directory"):
        find_run_dirs([tmp_path / "nope"])
    with pytest.raises(FileNotFoundError, match="no metrics.jsonl"):
        find_run_dirs([tmp_path])


def test_compare_counts_steps_not_the_epoch_end_row_and_cli_errors_are_messages(tmp_path, capsys):
    from optprobe.cli import main

    table = synthetic_table(steps=5, curvature=False)
    end = table.iloc[[-1]].assign(step=5, event="epoch_end")  # an epoch end carries the next step's index
    run = write_run(tmp_path / "runs" / "x" / "r", pd.concat([table, end], ignore_index=True))
    assert list(compare([run])["steps"]) == [5]
    (tmp_path / "empty").mkdir()
    assert main(["compare", str(tmp_path / "empty")]) == 2
    assert "optprobe: error: no metrics.jsonl" in capsys.readouterr().err


def test_seeds_of_a_run_or_of_a_sweep_point_share_one_curve_and_the_caption_says_how(tmp_path):
    from optprobe.report.figures import SEED_BAND

    for seed in (0, 1):
        label = f"a__lr0.1_seed{seed}"
        table = synthetic_table(steps=30, seed=seed, curvature=False)
        write_run(tmp_path / "sweep" / label, table, experiment="demo_sweep", label=label, seed=seed)
    html = build_report([tmp_path / "sweep"], tmp_path / "out").read_text(encoding="utf-8")
    assert SEED_BAND in html
    write_run(tmp_path / "one" / "b", synthetic_table(steps=30, curvature=False), experiment="d", label="b")
    assert SEED_BAND not in build_report([tmp_path / "one"], tmp_path / "out1").read_text(encoding="utf-8")
