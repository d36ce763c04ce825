"""`optprobe list`: each experiment's estimate for its own seeds, and totals for the default suite and --all,
all from the experiment files' `minutes` (one seed of every run)."""

from __future__ import annotations

import math
import re

from optprobe.cli import main
from optprobe.experiments.config import estimated_run_seconds
from optprobe.experiments.registry import DEFAULT_SUITE, experiment_names, get_experiment
from optprobe.experiments.runner import seed_runs


def _total(out: str, what: str) -> tuple[float, int]:
    match = re.search(rf"^{re.escape(what)}: +~([\d.]+) min of training, (\d+) runs$", out, flags=re.M)
    assert match, out
    return float(match[1]), int(match[2])


def test_list_prints_estimates_for_the_default_seeds_and_totals_that_sum_the_configs(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    experiments = [get_experiment(name) for name in experiment_names()]
    for e in experiments:
        (line,) = [line for line in out.splitlines() if line[2:].startswith(f"{e.name} ")]
        assert f"~{e.minutes * e.seeds:>4.1f} min  {e.seeds} × {len(e.runs)} runs" in line
        assert line.startswith("*" if e.name in DEFAULT_SUITE else " ")
    for what, chosen in (("default suite (*)", [e for e in experiments if e.name in DEFAULT_SUITE]),
                         ("--all", experiments)):  # fmt: skip
        minutes, runs = _total(out, what)
        assert minutes == round(sum(e.minutes * e.seeds for e in chosen), 1)
        assert runs == sum(len(seed_runs(e)) for e in chosen)


def test_the_per_run_estimates_of_an_experiment_add_up_to_its_minutes_times_its_seeds():
    for name in experiment_names():
        e = get_experiment(name)
        seconds = sum(estimated_run_seconds(e) for _ in seed_runs(e))
        assert math.isclose(seconds, 60 * e.minutes * e.seeds), name
