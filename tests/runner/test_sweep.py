"""Sweeps: grid × seeds on the local process pool (the Ray executor: test_ray_tune.py, 2-node cluster)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from optprobe.cli import main
from optprobe.errors import OptprobeError
from optprobe.experiments.sweep import best_settings, expand, parse_grid, run_sweep


def test_grid_parsing_and_expansion():
    grid = parse_grid(["lr=0.01,0.1", "probe.every=1,2"])
    assert grid == {"lr": ["0.01", "0.1"], "probe.every": ["1", "2"]}
    exp = expand("convex_sanity", {"lr": ["0.01", "0.1"]}, seeds=2, quick=True)
    assert len(exp.runs) == 2 * 2 * 2
    assert {r.lr for r in exp.runs} == {0.01, 0.1} and {r.seed for r in exp.runs} == {0, 1}
    assert len({r.label for r in exp.runs}) == len(exp.runs)
    with pytest.raises(OptprobeError, match="key=v1,v2"):
        parse_grid(["lr"])


def test_runs_option_tunes_only_the_named_runs():
    """``--runs`` sweeps one optimizer of an experiment (the paper tuned each optimizer's lr apart)."""
    exp = expand("convex_sanity", {"lr": ["0.01", "0.1"]}, seeds=2, quick=True, runs=["logistic_adamw"])
    assert len(exp.runs) == 2 * 2 and {r.label.split("__")[0] for r in exp.runs} == {"logistic_adamw"}
    with pytest.raises(OptprobeError, match="least_squares_gd, logistic_adamw"):
        expand("convex_sanity", {"lr": ["0.01"]}, seeds=1, quick=True, runs=["adam"])
    with pytest.raises(OptprobeError, match="names no run"):
        expand("convex_sanity", {"lr": ["0.01"]}, seeds=1, quick=True, runs=[])


def test_sweep_picks_the_best_learning_rate_per_run(tmp_path):
    exp = expand("convex_sanity", {"lr": ["0.0001", "0.05"]}, seeds=1, overrides=["epochs=3"], quick=True)
    run_dirs = run_sweep(exp, tmp_path, executor="local", workers=2)
    best = best_settings(run_dirs, ["lr"], "loss")
    winners = best[best["best"]].set_index("run")["lr"]
    assert winners.to_dict() == {"logistic_adamw": 0.05, "least_squares_gd": 0.05}  # 1e-4 barely moves


def test_runs_sharing_an_optimizer_are_ranked_apart(tmp_path):
    """local_convexity has cnn_sgdm and gpt_sgdm: one optimizer, two runs, each with its own best lr."""
    exp = expand("convex_sanity", {"lr": ["0.0001", "0.05"]}, seeds=1, overrides=["epochs=3"], quick=True)
    exp.runs = [replace(r, optimizer="sgd") for r in exp.runs]  # both runs now share the optimizer
    best = best_settings(run_sweep(exp, tmp_path, workers=2), ["lr"], "loss")
    assert sorted(best["run"].unique()) == ["least_squares_gd", "logistic_adamw"]
    assert best["best"].sum() == 2 and (best.groupby("run")["count"].sum() == 2).all()


def test_sweep_command_prints_the_table(tmp_path, capsys):
    args = [
        "sweep",
        "convex_sanity",
        "--grid",
        "lr=0.001,0.05",
        "--quick",
        "--out",
        str(tmp_path),
        "--no-report",
    ]
    assert main([*args, "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "best" in out and "adamw" in out
