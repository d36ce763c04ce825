"""Bad input and divergence: clear messages, nothing half-written, a documented policy."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from optprobe.cli import main
from optprobe.errors import OptprobeError
from optprobe.probe import Probe
from optprobe.sinks import read_table


def test_unknown_experiment_suggests_the_closest_and_writes_nothing(tmp_path, capsys):
    assert main(["run", "convex_sanit", "--out", str(tmp_path / "out")]) == 2
    assert "did you mean 'convex_sanity'" in capsys.readouterr().err.lower()
    assert not (tmp_path / "out").exists()


def test_a_bad_override_in_a_later_experiment_stops_before_any_run(tmp_path, capsys):
    assert (
        main(["run", "convex_sanity", "rotation", "--set", "runs.adam.lr=fast", "--out", str(tmp_path)]) == 2
    )
    assert "lr must be of type float" in capsys.readouterr().err
    assert not (tmp_path / "convex_sanity").exists()


def test_divergence_stops_with_a_clear_message_and_keeps_the_rows(tmp_path, capsys):
    args = ["run", "convex_sanity", "--quick", "--no-progress", "--no-report", "--out", str(tmp_path)]
    assert (
        main([*args, "--set", "runs.least_squares_gd.lr=100.0", "--set", "runs.least_squares_gd.epochs=400"])
        == 1
    )
    err = capsys.readouterr().err
    assert "the loss is" in err and "on_divergence='skip'" in err
    table = read_table(tmp_path / "convex_sanity" / "least_squares_gd")
    assert not math.isfinite(table["loss"].iloc[-1]) and math.isfinite(table["loss"].iloc[0])


def test_divergence_skip_policy_runs_to_the_end(tmp_path):
    args = ["run", "convex_sanity", "--quick", "--no-progress", "--no-report", "--out", str(tmp_path)]
    overrides = ["runs.least_squares_gd.lr=100.0", "runs.least_squares_gd.epochs=400", "on_divergence=skip"]
    assert main([*args, *[f"--set={o}" for o in overrides]]) == 0
    table = read_table(tmp_path / "convex_sanity" / "least_squares_gd").query("event == 'step'")
    assert len(table) == 400


def test_batch_on_another_device_type_is_a_clear_error():
    model = nn.Linear(2, 1)
    probe = Probe(model, lambda m, b: m(b[0]).mean(), out_dir=None)
    meta_batch = (torch.empty(4, 2, device="meta"),)
    with pytest.raises(OptprobeError, match="move the batch"):
        probe.begin_step(meta_batch)
