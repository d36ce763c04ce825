"""The Ray executor on Ray Tune: one trial per run of a sweep (grid point × seed), on any node of a cluster.

Each trial trains its run with :func:`~optprobe.experiments.runner.run_one` straight into the sweep's
storage (``<storage>/<experiment>/<label>``, the run directory the local executor writes too), so the driver
reads every table from there whatever node ran it; on a cluster the storage must be a filesystem mounted at
the same path on every node. A trial whose worker or node dies is retried (``max_failures``) and resumes
from the run's own ``checkpoint.pt``, so its table is the one an uninterrupted run writes; Tune's own
experiment state lives in ``<storage>/<experiment>/_tune-<key>`` and running the same sweep again after the
driver died continues it with ``Tuner.restore``. Rows reach Tune (its progress table, TensorBoard/W&B
callbacks) through ``tune.report`` as the run writes them.
"""

from __future__ import annotations

import gc
import hashlib
import json
import math
import os
import re
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from optprobe.errors import OptprobeError
from optprobe.experiments.config import ExperimentConfig

ATTEMPTS = "ray_trial.jsonl"  # one line per start of a run's trial: node, worker PID, resumed or not
DEFAULT_MAX_FAILURES = 3
REPORT_EVERY_S = 1.0
Resources = str | dict[str, float] | None  # "cpu=2,gpu=0.5", {"cpu": 2, "gpu": 0.5}, or the default


def parse_resources(text: Resources, device: str = "cpu") -> dict[str, float]:
    """``"cpu=2,gpu=0.5"`` → ``{"cpu": 2.0, "gpu": 0.5}``; unset: one CPU, and one GPU when ``device`` is
    CUDA. Any other key is a custom Ray resource (``accelerator_type:H100=1``)."""
    wanted: dict[str, float] = {"cpu": 1.0, "gpu": 1.0 if device.startswith("cuda") else 0.0}
    items = text.items() if isinstance(text, dict) else _pairs(text or "")
    for key, value in items:
        try:
            amount = float(value)
        except ValueError:
            raise OptprobeError(f"--resources: {key}={value!r} is not a number") from None
        if not math.isfinite(amount) or amount < 0:
            raise OptprobeError(f"--resources: {key} must be a non-negative number, got {value!r}")
        wanted[key] = amount
    if device.startswith("cuda") and wanted["gpu"] <= 0:
        raise OptprobeError(f"--device {device} runs each trial on a GPU: give --resources gpu=1 (or 0.5, …)")
    return wanted


def _pairs(text: str) -> list[tuple[str, str]]:
    pairs = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise OptprobeError(f"--resources expects key=value,... (e.g. cpu=2,gpu=0.5), got {item!r}")
        pairs.append((key.strip(), value.strip()))
    return pairs


def sweep_key(experiment: ExperimentConfig) -> str:
    """A digest of the sweep's runs (labels and settings): the same command finds its Tune state again,
    a changed grid starts its own."""
    runs = json.dumps([asdict(run) for run in experiment.runs], sort_keys=True, default=str)
    return hashlib.sha256(f"{experiment.name}\n{runs}".encode()).hexdigest()[:12]


def run_on_tune(
    experiment: ExperimentConfig,
    storage_path: str | os.PathLike[str],
    device: str = "cpu",
    resources: Resources = None,
    max_failures: int = DEFAULT_MAX_FAILURES,
    verbose: int = 1,
) -> list[Path]:
    """Run every run of ``experiment`` as a Tune trial into ``storage_path``; returns the run directories in
    config order (a rerun after the driver died restores the Tune experiment and finishes it)."""
    try:
        import ray
        from ray import tune
    except ImportError:
        raise OptprobeError(
            "--executor ray needs Ray Tune: pip install 'optprobe[ray]' (or pip install 'ray[tune]')"
        ) from None
    if re.match(r"[A-Za-z][A-Za-z0-9+.-]+:/", str(storage_path)):  # s3://b is s3:/b once a Path
        raise OptprobeError(
            f"--out {storage_path}: the Ray executor writes run directories to a filesystem path; on a "
            "cluster give a shared filesystem mounted at the same path on every node (NFS, s3fs, …)"
        )
    root = Path(storage_path).resolve() / experiment.name
    name = f"_tune-{sweep_key(experiment)}"
    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS"), include_dashboard=False, log_to_driver=False)
    runs = trainable(experiment, str(root), device, resources)
    if tune.Tuner.can_restore(root / name):
        tuner = tune.Tuner.restore(str(root / name), runs, resume_unfinished=True, resume_errored=True)
    else:
        tuner = tune.Tuner(
            runs,
            param_space={"label": tune.grid_search([run.label for run in experiment.runs])},
            run_config=tune.RunConfig(
                name=name,
                storage_path=str(root),
                failure_config=tune.FailureConfig(max_failures=max_failures),
                verbose=verbose,
            ),
        )
    results = tuner.fit()
    # Tune leaves placement-group managers in reference cycles whose __del__ calls into Ray: collected
    # later in a forked child (the local executor's pool) they crash it, so collect them here and now
    gc.collect()
    failed = [r for r in results if r.error is not None]
    if failed:
        raise OptprobeError(
            f"{len(failed)} of {len(results)} trials failed after {max_failures} retries; the first: "
            f"{failed[0].error!r}. Run the same command again to retry them"
        )
    return [root / run.label for run in experiment.runs]  # divergences are in run.json, as locally


def trainable(
    experiment: ExperimentConfig, root: str, device: str = "cpu", resources: Resources = None
) -> Any:
    """The Tune trainable of a sweep: :func:`_trial` with the experiment, the sweep's folder and the
    device bound, asking each trial for ``resources`` (see :func:`parse_resources`)."""
    from ray import tune

    bound = tune.with_parameters(_trial, experiment=experiment, root=root, device=device)
    return tune.with_resources(bound, parse_resources(resources, device))


def _trial(config: dict[str, Any], experiment: ExperimentConfig, root: str, device: str) -> None:
    """One Tune trial: train (or resume, or skip when finished) the run ``config["label"]``."""
    import ray
    import torch

    from optprobe.experiments.runner import CHECKPOINT, run_one

    torch.set_num_threads(max(1, int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1))))
    run = next(r for r in experiment.runs if r.label == config["label"])
    run_dir = Path(root) / run.label
    node = ray.get_runtime_context().get_node_id()
    _record_attempt(run_dir, {"node_id": node, "resumed": (run_dir / CHECKPOINT).exists()})
    sink = TuneSink()
    # under Ray, "cuda" is the GPU Ray gave the trial (CUDA_VISIBLE_DEVICES); a divergence ends the run
    # normally (recorded in run.json, said by the CLI afterwards), so Tune does not retry it
    run_one(run, run_dir, experiment, "cuda" if device.startswith("cuda") else device, False, [sink])


def _record_attempt(run_dir: Path, fields: dict[str, Any]) -> None:
    """Append a line about this start of the run's trial (node, worker PID, resumed?) or how it ended."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / ATTEMPTS, "a") as f:
        f.write(json.dumps({**fields, "pid": os.getpid(), "time": time.time()}) + "\n")


def read_attempts(run_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The starts of a run's Tune trial, oldest first (empty for a run the local executor made)."""
    path = Path(run_dir) / ATTEMPTS
    return [json.loads(line) for line in path.read_text().splitlines() if line] if path.exists() else []


class TuneSink:
    """Hands a run's rows to Tune as they come: the newest row at most every ``every_s`` seconds (each
    ``tune.report`` waits for the driver) and the last one when the run closes."""

    def __init__(self, every_s: float = REPORT_EVERY_S) -> None:
        self.every_s = every_s
        self.last: dict[str, float] = {}
        self._pending = False
        self._reported_at = -math.inf

    def write(self, row: dict[str, Any]) -> None:
        """Keep the row's numbers; report them when ``every_s`` has passed since the last report."""
        self.last = {k: float(v) for k, v in row.items() if isinstance(v, (int, float))}
        self._pending = True
        if time.monotonic() - self._reported_at >= self.every_s:
            self._report()

    def close(self) -> None:
        """Report the last row not yet reported."""
        if self._pending:
            self._report()

    def _report(self) -> None:
        from ray import tune

        tune.report(self.last)
        self._pending, self._reported_at = False, time.monotonic()
