"""Progress of a suite on stderr: run k of n with elapsed time and ETA, skipped runs, pilot runs, report."""

from __future__ import annotations

from pathlib import Path

import pytest

from optprobe.cli import main
from optprobe.experiments.progress import SuiteProgress, clock_text

TINY = """
name = "tiny"
minutes = 0.5
seeds = 2
[defaults]
task = "least_squares"
optimizer = "sgd"
lr = 0.05
max_steps = 3
full_batch = true
[[runs]]
label = "gd"
reference = "pilot_other_seed"
pilot_epochs = 2
[[runs]]
label = "plain"
"""


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_eta_starts_from_the_estimates_then_scales_them_by_the_measured_runs(capsys):
    clock = FakeClock()
    lines = SuiteProgress([10.0, 20.0, 30.0, 40.0], clock=clock)
    lines.start("e/a seed 0")
    assert lines.eta() == (100.0, None)  # nothing measured: the sum of the estimates
    clock.now += 4.0
    assert lines.eta() == (96.0, None)  # the run in training counts with what it has left
    clock.now += 1.0
    lines.done()  # 5 s measured for 10 s estimated: this machine is twice as fast
    lines.skip("out/e/b")
    clock.now += 2.0
    lines.start("e/c seed 1")
    assert lines.eta() == ((30.0 + 40.0) * 0.5, 0.5)  # the skipped run's estimate is not counted
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "run 1 of 4: e/a seed 0 · elapsed 0:00 · ETA 1:40 (from the experiments' minutes)",
        "run 2 of 4: skipped, finished: out/e/b",
        "run 3 of 4: e/c seed 1 · elapsed 0:07 · ETA 0:35 (estimates × 0.5, from the runs so far)",
    ]


def test_disabled_progress_prints_nothing(capsys):
    lines = SuiteProgress([1.0], enabled=False)
    lines.start("e/a seed 0")
    lines.pilot()
    lines.skip("x")
    lines.report_start(1, "out")
    lines.report_done()
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize(
    ("seconds", "text"), [(0.4, "0:00"), (59.6, "1:00"), (754, "12:34"), (3725, "1:02:05")]
)
def test_clock_text(seconds, text):
    assert clock_text(seconds) == text


def test_run_prints_one_line_per_run_pilots_skips_and_the_report_on_stderr(tmp_path, capsys, monkeypatch):
    import optprobe.report

    config = tmp_path / "tiny.toml"
    config.write_text(TINY, encoding="utf-8")
    out = tmp_path / "runs"
    monkeypatch.setattr(optprobe.report, "build_report", lambda dirs, where: Path(where) / "report.html")
    assert main(["run", str(config), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    err = [line for line in captured.err.splitlines() if "it/s" not in line and "%|" not in line]
    starts = [line.split(" · ")[0] for line in err if line.startswith("run ")]
    assert starts == [f"run {k} of 4: tiny/{label} seed {s}" for k, (label, s) in
                      enumerate([("gd", 0), ("gd", 1), ("plain", 0), ("plain", 1)], 1)]  # fmt: skip
    assert "ETA 1:00 (from the experiments' minutes)" in err[0]  # 0.5 min per seed × 2 seeds
    pilots = [line for line in err if "training the reference x*" in line]
    assert [p.split(":")[0].strip() for p in pilots] == ["tiny/gd seed 0", "tiny/gd seed 1"]  # one per seed
    assert err[-2] == f"building the report of 4 runs in {out} …" and err[-1].startswith("report built in")
    assert "run " not in captured.out and "4 runs in" in captured.out  # progress stays off stdout

    assert main(["run", str(config), "--out", str(out), "--no-report"]) == 0
    err = capsys.readouterr().err.splitlines()
    names = ["gd__seed0", "gd__seed1", "plain__seed0", "plain__seed1"]
    assert err == [f"run {k} of 4: skipped, finished: {out / 'tiny' / n}" for k, n in enumerate(names, 1)]


def test_no_progress_hides_the_suite_lines(tmp_path, capsys):
    config = tmp_path / "tiny.toml"
    config.write_text(TINY, encoding="utf-8")
    assert main(["run", str(config), "--out", str(tmp_path / "runs"), "--no-progress", "--no-report"]) == 0
    assert capsys.readouterr().err == ""


def test_the_eta_of_a_run_in_training_is_its_scaled_estimate_less_its_elapsed_time():
    """Once runs are measured, the run in training has estimate × ratio − elapsed left (both in this
    machine's seconds), not (estimate − elapsed) × ratio."""
    clock = FakeClock()
    lines = SuiteProgress([10.0, 20.0, 30.0], enabled=False, clock=clock)
    lines.start("e/a seed 0")
    clock.now += 5.0
    lines.done()  # ratio 0.5: run b should take 10 s here
    lines.start("e/b seed 0")
    clock.now += 4.0
    assert lines.eta() == (pytest.approx((20.0 * 0.5 - 4.0) + 30.0 * 0.5), 0.5)
