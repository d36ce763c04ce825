"""Grid sweeps: every run of an experiment × a grid of settings × seeds, on a process pool or Ray Tune.

The studies tune learning rates by grid search; ``optprobe sweep local_convexity --grid lr=1e-4,1e-3
--seeds 3`` runs each combination as its own run directory, then picks the best value per run of the
experiment (e.g. ``cnn_sgdm`` and ``gpt_sgdm`` apart) by a criterion column of the tables (lower is
better), averaged over seeds.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import pandas as pd

from optprobe.errors import OptprobeError
from optprobe.experiments.config import ExperimentConfig, RunConfig
from optprobe.experiments.registry import get_experiment
from optprobe.runinfo import read_run_info
from optprobe.sinks import read_table

EXECUTORS = ("local", "ray")
SEP = "__"  # between a run's own label and its grid point (sweep) or seed (``seeds > 1``) in a directory


def base_label(label: str) -> str:
    """The experiment's run a sweep or seed run came from: ``cnn_sgdm__lr0.1_seed0``, ``cnn_sgdm__seed2``
    → ``cnn_sgdm``."""
    return label.split(SEP, 1)[0]


def seed_dir_name(label: str, seed: int) -> str:
    """The directory of one seed of a run repeated over seeds: ``sgdm`` and 2 → ``sgdm__seed2``."""
    return f"{label}{SEP}seed{seed}"


def parse_grid(items: Sequence[str]) -> dict[str, list[str]]:
    """``["lr=1e-4,3e-4", "probe.every=1,5"]`` → ``{"lr": ["1e-4", "3e-4"], "probe.every": ["1", "5"]}``."""
    grid: dict[str, list[str]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        choices = [v.strip() for v in values.split(",") if v.strip()]
        if not sep or not key.strip() or not choices:
            raise OptprobeError(f"--grid expects key=v1,v2,... (e.g. lr=1e-4,3e-4,1e-3), got {item!r}")
        grid[key.strip()] = choices
    return grid


def expand(
    name: str, grid: dict[str, list[str]], seeds: int, overrides: Sequence[str] = (), quick: bool = False,
    runs: Sequence[str] | None = None,
) -> ExperimentConfig:  # fmt: skip
    """One experiment whose runs are every (run, grid point, seed) combination, labelled
    ``<run>__<values>_seed<seed>`` (:func:`base_label` recovers ``<run>``); ``runs`` keeps only the
    experiment's runs with those labels."""
    if seeds < 1:
        raise OptprobeError(f"--seeds must be at least 1, got {seeds}")
    base = get_experiment(name, list(overrides), quick)
    labels = [run.label for run in base.runs]
    if runs is not None and not runs:
        raise OptprobeError(f"--runs names no run; {base.name} has the runs {', '.join(labels)}")
    unknown = sorted(set(runs or ()) - set(labels))
    if unknown:
        raise OptprobeError(f"--runs {', '.join(unknown)}: {base.name} has the runs {', '.join(labels)}")
    keep = set(runs or labels)
    expanded: list[RunConfig] = []
    keys = list(grid)
    for values in itertools.product(*(grid[k] for k in keys)):
        point = [f"{k}={v}" for k, v in zip(keys, values, strict=True)]
        for seed in range(seeds):
            variant = get_experiment(name, [*overrides, *point, f"seed={base.runs[0].seed + seed}"], quick)
            tag = "_".join(f"{k.split('.')[-1]}{v}" for k, v in zip(keys, values, strict=True))
            expanded += [
                replace(run, label=f"{run.label}{SEP}{tag}_seed{run.seed}")
                for run in variant.runs
                if run.label in keep
            ]
    return replace(base, name=f"{base.name}_sweep", runs=expanded, seeds=1)  # the seeds are runs already


def run_sweep(
    experiment: ExperimentConfig, out_dir: Path, executor: str = "local", workers: int | None = None,
    device: str = "cpu", resources: str | dict[str, float] | None = None,
) -> list[Path]:  # fmt: skip
    """Run every run of ``experiment`` in parallel; returns the run directories in config order. The Ray
    executor runs each as a Ray Tune trial (``resources`` per trial, e.g. ``"cpu=2,gpu=0.5"``)."""
    from optprobe.experiments.runner import run_one

    if executor not in EXECUTORS:
        raise OptprobeError(f"unknown executor {executor!r}; choose from {', '.join(EXECUTORS)}")
    root = Path(out_dir) / experiment.name
    jobs = [(run, root / run.label, experiment, device) for run in experiment.runs]
    workers = workers or max(1, min(len(jobs), os.cpu_count() or 1))
    if executor == "ray":
        from optprobe.experiments.ray_tune import run_on_tune

        return run_on_tune(experiment, out_dir, device, resources)
    with ProcessPoolExecutor(max_workers=workers, initializer=_one_thread) as pool:
        futures = [pool.submit(run_one, run, run_dir, exp, dev, False) for run, run_dir, exp, dev in jobs]
        return [f.result() for f in futures]


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)


def best_settings(
    run_dirs: Sequence[Path], grid_keys: Sequence[str], criterion: str = "loss"
) -> pd.DataFrame:
    """Per run of the experiment and grid point: the criterion (mean of the last 10% of rows) over seeds;
    best first.

    The criterion is any table column, lower is better (``loss``, ``full_loss``, …).
    """
    rows = []
    for run_dir in run_dirs:
        info = read_run_info(run_dir)
        table = read_table(run_dir)
        if criterion not in table:
            raise OptprobeError(
                f"criterion {criterion!r} is not a column of {run_dir}; pick one of the table's"
            )
        values = table[criterion].dropna()
        tail = values.iloc[-max(1, len(values) // 10) :].mean() if len(values) else math.nan
        config = info.get("run_config", {})
        rows.append(
            {
                "run": base_label(str(info.get("label"))),
                "optimizer": info.get("optimizer"),
                **{k: _lookup(config, k) for k in grid_keys},
                criterion: tail,
            }
        )
    frame = pd.DataFrame(rows)
    groups = ["run", "optimizer", *grid_keys]
    summary = frame.groupby(groups, dropna=False)[criterion].agg(["mean", "std", "count"])
    summary = summary.reset_index().sort_values(["run", "mean"])
    summary["best"] = ~summary.duplicated("run")
    return summary


def _lookup(config: dict, dotted: str) -> object:
    value: object = config
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value
