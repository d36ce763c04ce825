"""Seeds: each run repeated over seed, seed+1, … into <label>__seed<s>; resume, --from, pilots per seed."""

from __future__ import annotations

import json

import pytest

from optprobe.cli import main
from optprobe.errors import OptprobeError
from optprobe.experiments import runner, suite
from optprobe.experiments.config import experiment_from_dict
from optprobe.experiments.registry import DEFAULT_SUITE, experiment_names, get_experiment
from optprobe.experiments.sweep import base_label
from optprobe.sinks import read_table

QUICK = ["--quick", "--no-progress", "--no-report"]
TINY = {
    "name": "tiny",
    "defaults": {"task": "least_squares", "optimizer": "sgd", "lr": 0.05, "max_steps": 4, "full_batch": True},
    "runs": [{"label": "gd", "seed": 5}, {"label": "gd_small", "lr": 0.01}],
}


def test_seeds_expand_every_run_into_one_directory_per_seed():
    exp = experiment_from_dict({**TINY, "seeds": 3})
    expanded = runner.seed_runs(exp)
    assert [(run.label, run.seed, name) for run, name in expanded] == [
        ("gd", 5, "gd__seed5"), ("gd", 6, "gd__seed6"), ("gd", 7, "gd__seed7"),
        ("gd_small", 0, "gd_small__seed0"), ("gd_small", 1, "gd_small__seed1"),
        ("gd_small", 2, "gd_small__seed2"),
    ]  # fmt: skip
    assert {base_label(name) for _, name in expanded} == {"gd", "gd_small"}
    one = experiment_from_dict(TINY)
    assert one.seeds == 1 and [(r.seed, n) for r, n in runner.seed_runs(one)] == [(5, "gd"), (0, "gd_small")]


def test_quick_uses_one_seed_and_fewer_than_one_seed_is_an_error():
    assert experiment_from_dict({**TINY, "seeds": 3}, quick=True).seeds == 1
    with pytest.raises(OptprobeError, match="seeds must be at least 1"):
        experiment_from_dict({**TINY, "seeds": 0})


def test_run_with_seeds_writes_each_seed_and_resumes_skips_and_refuses_like_one_run(tmp_path, capsys):
    out = str(tmp_path)
    assert main(["run", "convex_sanity", *QUICK, "--seeds", "2", "--out", out]) == 0
    root = tmp_path / "convex_sanity"
    assert sorted(p.name for p in root.iterdir() if not p.name.startswith("_")) == [
        "least_squares_gd__seed0", "least_squares_gd__seed1",
        "logistic_adamw__seed0", "logistic_adamw__seed1",
    ]  # fmt: skip
    infos = [json.loads((root / f"logistic_adamw__seed{s}" / "run.json").read_text()) for s in (0, 1)]
    assert [(i["label"], i["seed"], i["run_config"]["seed"]) for i in infos] == [
        ("logistic_adamw", 0, 0),
        ("logistic_adamw", 1, 1),
    ]
    first = read_table(root / "logistic_adamw__seed0")
    assert not first["loss"].equals(read_table(root / "logistic_adamw__seed1")["loss"])  # other batches
    mtime = (root / "logistic_adamw__seed1" / "run.json").stat().st_mtime_ns
    assert main(["run", "convex_sanity", *QUICK, "--seeds", "2", "--out", out]) == 0  # finished: skipped
    assert (root / "logistic_adamw__seed1" / "run.json").stat().st_mtime_ns == mtime
    other = ["--set", "runs.logistic_adamw.lr=0.5"]
    assert main(["run", "convex_sanity", *QUICK, "--seeds", "2", "--out", out, *other]) == 2
    assert "least_squares_gd__seed0" not in capsys.readouterr().err  # the refused one is the changed run
    copy = tmp_path / "again"
    assert main(["run", "--from", str(root / "logistic_adamw__seed1"), *QUICK[1:], "--out", str(copy)]) == 0
    reproduced = read_table(copy / "convex_sanity" / "logistic_adamw")
    assert reproduced.equals(read_table(root / "logistic_adamw__seed1"))


def test_pilot_references_are_cached_per_seed(tmp_path):
    run = {"label": "gd", "reference": "pilot_other_seed", "pilot_epochs": 2}
    exp = experiment_from_dict({**TINY, "seeds": 2, "runs": [run]})
    dirs = suite.run_suite([exp], tmp_path, progress=False)
    assert [d.name for d in dirs] == ["gd__seed0", "gd__seed1"]
    assert len(list((tmp_path / "tiny" / "_cache").glob("pilot-*.pt"))) == 2  # pilots of seed 1 and seed 2
    refs = [read_table(d)["ref_full_loss"].dropna().iloc[0] for d in dirs]
    assert refs[0] != refs[1]


def test_all_runs_every_experiment_and_seeds_overrides_the_files(monkeypatch):
    calls = []
    monkeypatch.setattr(suite, "run_suite", lambda exps, *a, **k: calls.extend(exps) or [])
    assert main(["run", "--all", *QUICK]) == 0
    assert [e.name for e in calls] == experiment_names() and {e.seeds for e in calls} == {1}
    calls.clear()
    assert main(["run", "rotation", "--seeds", "3", *QUICK]) == 0
    assert [(e.name, e.seeds) for e in calls] == [("rotation", 3)]
    assert main(["run", "--all", "rotation", *QUICK]) == 2
    assert main(["run", "rotation", "--seeds", "0", *QUICK]) == 2


def test_the_default_suite_has_six_named_experiments():
    assert len(DEFAULT_SUITE) >= 6 and set(DEFAULT_SUITE) <= set(experiment_names())
    assert all(get_experiment(name).runs for name in DEFAULT_SUITE)


def test_sampled_curvature_estimators_draw_their_probes_from_the_run_seed():
    """Each seed's Cauchy/Hutchinson probes differ, so the across-seed interval includes their sampling
    error (with seed 0 for every run, a fixed Hessian gave zero-width intervals); an explicit seed wins."""
    curvature = [{"name": "hessian_l11", "every": 5},
                 {"name": "hessian_trace", "every": 5, "options": {"seed": 11}}]  # fmt: skip
    exp = experiment_from_dict({**TINY, "seeds": 2, "defaults": {**TINY["defaults"], "curvature": curvature}})
    seeds = [[m.seed for m in runner._curvature(run)] for run, _ in runner.seed_runs(exp)]
    assert seeds[:2] == [[5, 11], [6, 11]]
