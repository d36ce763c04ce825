"""What the report and run.json record about where a run came from (version, git commit, wall time), where
``optprobe report`` writes, and how the report card reads to someone who did not write it."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from synthetic import synthetic_table, write_run

from optprobe.report import build_report
from optprobe.report.runs import default_report_dir
from optprobe.runinfo import source_commit


def test_report_default_out_is_a_folder_of_its_own_beside_the_runs(tmp_path, capsys):
    from optprobe.cli import main

    runs = [write_run(tmp_path / "runs" / "convex_sanity" / name, synthetic_table(steps=20, curvature=False))
            for name in ("a", "b")]  # fmt: skip
    assert default_report_dir(runs) == tmp_path / "runs" / "convex_sanity" / "report"
    assert default_report_dir(runs[:1]) == tmp_path / "runs" / "convex_sanity" / "report"  # not into the run
    assert default_report_dir([tmp_path / "runs"]) == tmp_path / "runs"  # a folder of runs, as `run` does
    assert main(["report", *map(str, runs)]) == 0
    assert (tmp_path / "runs" / "convex_sanity" / "report" / "report.html").is_file()
    assert not any((run / "report.html").exists() for run in runs)
    assert "convex_sanity/report/report.html" in capsys.readouterr().out


@pytest.mark.skipif(shutil.which("git") is None, reason="no git on this machine")
def test_source_commit_is_the_checkout_head_when_optprobe_runs_from_a_checkout():
    import optprobe

    package = Path(optprobe.__file__).parent
    head = subprocess.run(["git", "-C", str(package), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode != 0:
        pytest.skip("optprobe is not imported from a git checkout here")
    commit = source_commit()
    assert commit is not None and re.fullmatch(r"[0-9a-f]{40}(\+dirty)?", commit)
    assert commit.split("+")[0] == head.stdout.strip()


def test_report_records_version_commit_and_wall_time(tmp_path, monkeypatch):
    monkeypatch.setattr("optprobe.runinfo.source_commit", lambda: "abc123")
    env = {"python": "3.11", "optprobe": "9.9.9", "git_commit": "def456"}
    write_run(tmp_path / "r1", synthetic_table(steps=20, curvature=False), label="r1", wall_seconds=75.0,
              environment=env)  # fmt: skip
    write_run(tmp_path / "r2", synthetic_table(steps=20, curvature=False), label="r2")
    html = build_report([tmp_path / "r1", tmp_path / "r2"], tmp_path / "out").read_text(encoding="utf-8")
    header = html[: html.index("<h2>")]
    assert "(commit abc123)" in header and "by optprobe " in header
    assert "total wall time 1 min 15 s (1 of 2 runs record it)" in header
    metadata = html[html.index("Run metadata") :]
    assert "<th>wall time</th><td>1 min 15 s</td>" in metadata
    assert "<th>git_commit</th><td>def456</td>" in metadata and "<th>optprobe</th><td>9.9.9</td>" in metadata


def test_report_card_rows_explain_themselves_and_unmeasured_rows_fold_away(tmp_path):
    from optprobe.report.verdicts import ABOUT

    run = write_run(tmp_path / "r", synthetic_table(steps=40, curvature=False), label="r")
    html = build_report([run], tmp_path / "out").read_text(encoding="utf-8")
    card = html[html.index('<details class="cards">') : html.index("Run metadata")]
    assert ABOUT["update_correlation"].plain in card and "Tran, Zhang &amp; Cutkosky, Sec. 4.2" in card
    folded = card[card.index('<details class="unmeasured">') :]
    assert "not measured in this run" in folded and "needs sharpness and lr in the table" in folded
    table = card[: card.index('<details class="unmeasured">')]
    assert "v-not-measured" not in table  # every row of the table was measured


def test_no_raw_subscripts_reach_the_reader(tmp_path):
    run = write_run(tmp_path / "r", synthetic_table(steps=40), label="r", experiment="local_convexity")
    html = build_report([run], tmp_path / "out").read_text(encoding="utf-8")
    text = re.sub(r"<(style|pre|code)>.*?</\1>", "", html, flags=re.S)
    assert not re.findall(r"(?<![\w])[A-Za-zΔηΣ]_(?:\{|\()", text)  # x_{t−1}, x_(t−1)
    assert "x<sub>t−1</sub>" in text
