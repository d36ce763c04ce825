"""The runner's run-directory contract: a directory is only resumed or skipped under the same settings."""

from __future__ import annotations

import pytest

from optprobe.cli import main
from optprobe.experiments import runner
from optprobe.experiments.config import experiment_from_dict
from optprobe.experiments.tasks import build_task
from optprobe.sinks import read_table

QUICK = ["--quick", "--no-progress", "--no-report"]


def test_a_run_directory_made_with_other_settings_is_refused_not_reused(tmp_path, capsys):
    from optprobe.experiments.registry import get_experiment

    out = str(tmp_path)
    lr = next(r.lr for r in get_experiment("convex_sanity", quick=True).runs if r.label == "least_squares_gd")
    assert main(["run", "convex_sanity", *QUICK, "--out", out]) == 0
    assert main(["run", "convex_sanity", *QUICK, "--out", out, "--set", "runs.least_squares_gd.lr=0.5"]) == 2
    err = capsys.readouterr().err
    assert "another configuration" in err and f"lr: {lr} -> 0.5" in err and "--out" in err
    assert main(["run", "convex_sanity", *QUICK, "--out", out]) == 0  # the same settings: skipped, fine
    how = ["--set", "probe.compile_reductions=true"]  # how the columns are computed, not what: no change
    assert main(["run", "convex_sanity", *QUICK, "--out", out, *how]) == 0


def test_from_reproduces_into_runs_reproduced_by_default(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["run", "convex_sanity", *QUICK]) == 0
    original = tmp_path / "runs" / "convex_sanity" / "logistic_adamw"
    assert main(["run", "--from", str(original), "--no-progress", "--no-report"]) == 0
    copy = tmp_path / "runs" / "reproduced" / "convex_sanity" / "logistic_adamw"
    assert read_table(copy).equals(read_table(original))


def test_warmup_cosine_with_a_single_step_runs(tmp_path):
    args = ["--set", "max_steps=1", "--set", "schedule=warmup_cosine"]
    assert main(["run", "convex_sanity", *QUICK, "--out", str(tmp_path), *args]) == 0
    assert [runner._schedule("warmup_cosine", 1)(s) for s in (0, 1)] == [1.0, 1.0]


def _pilot_run(**options):
    defaults = {"task": "least_squares", "optimizer": "sgd", "lr": 0.01, "max_steps": 5, "batch_size": 32}
    table = {"name": "pilot", "defaults": defaults, "runs": [{"label": "a", "reference": "pilot", **options}]}
    return experiment_from_dict(table).runs[0]


@pytest.mark.parametrize(("options", "epochs"), [({"pilot_epochs": 3}, 3), ({}, None)])
def test_pilot_epochs_set_the_pilot_length_even_when_the_run_has_max_steps(
    tmp_path, monkeypatch, options, epochs
):
    run = _pilot_run(**options)
    task = build_task(run.task, **run.task_options)
    batches = []
    original = runner._train_batches

    def counted(*args, **kwargs):
        for batch in original(*args, **kwargs):
            batches.append(batch)
            yield batch

    monkeypatch.setattr(runner, "_train_batches", counted)
    runner._reference(run, task, tmp_path, "cpu")
    expected = (
        5 if epochs is None else epochs * runner._steps_per_epoch(run, task)
    )  # else the run's max_steps
    assert len(batches) == expected


def test_a_finished_run_records_its_wall_time(tmp_path):
    from optprobe.runinfo import read_run_info

    assert main(["run", "convex_sanity", *QUICK, "--out", str(tmp_path)]) == 0
    info = read_run_info(tmp_path / "convex_sanity" / "least_squares_gd")
    assert info["finished"] is True and 0 < info["wall_seconds"] < 600


def test_a_run_made_before_a_probe_setting_existed_is_still_the_same_configuration(tmp_path):
    """run.json of a run written before ProbeConfig's replay_rng and seed were probe-table keys: its run
    is skipped (finished), not refused; a changed probe setting is still refused."""
    import json

    out = str(tmp_path)
    assert main(["run", "convex_sanity", *QUICK, "--out", out]) == 0
    for path in tmp_path.glob("convex_sanity/*/run.json"):
        info = json.loads(path.read_text())
        for key in ("replay_rng", "seed"):
            del info["run_config"]["probe"][key]
        path.write_text(json.dumps(info))
    assert main(["run", "convex_sanity", *QUICK, "--out", out]) == 0
    assert main(["run", "convex_sanity", *QUICK, "--out", out, "--set", "probe.every=2"]) == 2


def test_an_unknown_probe_metric_is_refused_before_anything_is_written(tmp_path, capsys):
    overrides = ["--set", "probe.metrics=['normz']"]
    assert main(["run", "convex_sanity", *QUICK, "--out", str(tmp_path), *overrides]) == 2
    assert "unknown metric family 'normz'" in capsys.readouterr().err and not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    "metric",
    [{"name": "full_smoothness", "every": 1}, {"name": "sharpness", "every": 2, "options": {"on": "eval"}}],
)
def test_a_curvature_metric_of_f_gets_the_evaluation_data_without_full_batch_metrics(tmp_path, metric):
    """full_smoothness and on='eval' measure F over the evaluation loader: a run that turns the full-batch
    metrics off still trains them (the loader was built only for full-batch metrics, and the Probe then
    said "pass eval_loader", which a config file cannot)."""
    defaults = {"task": "least_squares", "optimizer": "sgd", "lr": 0.05, "max_steps": 4, "full_batch": True,
                "probe": {"full_batch_every": 0, "full_batch_at_epoch_end": False}, "curvature": [metric]}
    exp = experiment_from_dict({"name": "f", "defaults": defaults, "runs": [{"label": "gd"}]})
    (run,) = exp.runs
    run_dir = runner.run_one(run, tmp_path / "gd", exp, progress=False)
    table = read_table(run_dir)
    column = "full_smooth" if metric["name"] == "full_smoothness" else "sharpness"
    assert table[column].notna().sum() >= 2
    assert "full_loss" not in table.columns  # the full-batch metrics stay off
