"""Every named experiment runs end to end in --quick mode, and the findings robust at small scale hold."""

from __future__ import annotations

import numpy as np
import pytest

from optprobe.cli import main
from optprobe.experiments.registry import experiment_names
from optprobe.report.verdicts import progress_identity_z
from optprobe.sinks import read_table


@pytest.fixture(scope="module")
def quick_runs(tmp_path_factory):
    """All experiments in --quick mode, once for the module (the report is built too)."""
    out = tmp_path_factory.mktemp("runs")
    assert main(["run", *experiment_names(), "--quick", "--out", str(out), "--no-progress"]) == 0
    return out


def test_every_experiment_writes_finished_runs_and_a_report(quick_runs):
    for name in experiment_names():
        runs = [p for p in (quick_runs / name).iterdir() if not p.name.startswith("_")]
        assert runs, f"{name} wrote no run"
        for run in runs:
            assert len(read_table(run)) > 0 and (run / "metrics.parquet").exists()
    html = (quick_runs / "report.html").read_text()
    assert "data:image/png;base64" in html and "holds" in html


def test_convex_tasks_have_nonpositive_gaps_and_negative_mean_update_correlation(quick_runs):
    for label in ("least_squares_gd", "logistic_adamw"):
        table = read_table(quick_runs / "convex_sanity" / label).query("event == 'step'")
        loss_scale = 1 + table["loss"].abs()
        assert (table["inst_gap_prev"].dropna() <= 1e-6 * loss_scale[table["inst_gap_prev"].notna()]).all()
        assert (table["inst_gap_ref"] <= 1e-6 * loss_scale).all()
        assert table["update_corr"].mean() < 0
        assert table["convexity_ratio"].dropna().iloc[-1] >= 1.0


def test_random_scaling_progress_identity_tracks_the_loss(quick_runs):
    """Σ(update_corr_rs − loss_diff) is a zero-mean walk: its z-score stays within 3 (a 3-sigma bound)."""
    for label in ("sgdm_rs", "adamw_rs"):
        table = read_table(quick_runs / "random_scaling" / label)
        z, n = progress_identity_z(table)
        assert n >= 60 and abs(z) <= 3.0
        assert table["scale"].nunique() > 1


def test_rotated_adam_is_slower_with_a_larger_l11_norm(quick_runs):
    plain = read_table(quick_runs / "rotation" / "adam")
    rotated = read_table(quick_runs / "rotation" / "adam_rotated")
    assert rotated["loss"].iloc[-1] > plain["loss"].iloc[-1]  # same minimum: L(Rw) is L in other coordinates
    assert rotated["hessian_l11"].dropna().iloc[0] > plain["hessian_l11"].dropna().iloc[0]


@pytest.mark.slow
def test_full_batch_gd_sharpness_settles_near_two_over_lr(tmp_path):
    assert main(["run", "edge_of_stability", "--out", str(tmp_path), "--no-progress", "--no-report",
                 "--seeds", "1", "--set", "runs.cnn_lr0.13.epochs=1"]) == 0  # fmt: skip
    table = read_table(tmp_path / "edge_of_stability" / "mlp_lr0.4")
    sharp = table["sharpness"].dropna()
    late = np.median(sharp.iloc[-len(sharp) // 3 :])
    assert late == pytest.approx(2 / 0.4, rel=0.1)


def test_full_scale_configs_validate_and_ask_for_the_data_path(tmp_path, capsys):
    from optprobe.experiments.registry import config_dir, get_experiment

    paths = sorted((config_dir() / "full_scale").glob("*.toml"))
    assert [p.stem for p in paths] == ["diagonal_uniformity_transformer", "gpt2_small", "resnet18_cifar10"]
    for path in paths:
        assert len(get_experiment(str(path)).runs) == 2
    assert main(["run", str(paths[2]), "--out", str(tmp_path), "--no-progress"]) == 2
    assert "REQUIRED" in capsys.readouterr().err
