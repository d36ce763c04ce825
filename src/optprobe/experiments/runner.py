"""Runs an experiment's training runs with a Probe attached: resumable, seeded, with progress bars.

Each run writes ``OUT/<experiment>/<label>/`` (the Probe's table and ``run.json``), or, when the
experiment repeats its runs over ``seeds > 1`` seeds, ``OUT/<experiment>/<label>__seed<s>/`` for
``s = seed, seed + 1, …`` (run.json keeps the run's own ``label`` and its ``seed``). Each keeps a
``checkpoint.pt`` (model, optimizer, scheduler, Probe state, CPU and CUDA RNG, position in the epoch)
every ``checkpoint_every`` steps and on Ctrl-C (after the step in progress), so running the same command
again resumes where it stopped and produces the same table as an uninterrupted run (CPU, fixed seed).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import inspect
import itertools
import json
import math
import pickle
import signal
import threading
import time
import typing
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm.auto import tqdm

from optprobe.errors import OptprobeError
from optprobe.evaluation import Batch
from optprobe.experiments.config import ExperimentConfig, RunConfig
from optprobe.experiments.sweep import seed_dir_name
from optprobe.experiments.tasks import Task, build_task, check_task_options
from optprobe.files import remove_dead_temporaries, write_atomic
from optprobe.locks import LOCK_NAME, run_dir_lock
from optprobe.metrics.base import PeriodicMetric
from optprobe.optim import build_optimizer, rotate_model
from optprobe.probe import Probe
from optprobe.probe_config import HOW_ONLY
from optprobe.runinfo import as_stored, changed_settings, read_run_info, update_run_info
from optprobe.sinks import Sink
from optprobe.sinks.table import LOG_NAME, read_table

CHECKPOINT = "checkpoint.pt"
#: Settings that do not change a run's results: changing them on a run directory is not a new configuration.
_NOT_RESULTS = ("keep_checkpoint", *(f"probe.{key}" for key in HOW_ONLY))
#: RunConfig's fields that are tables of typed settings (dataclasses), compared setting by setting.
_SETTINGS_TABLES = tuple(
    name for name, tp in typing.get_type_hints(RunConfig).items() if dataclasses.is_dataclass(tp)
)
_CHECKPOINT_KEYS = ("model", "optimizer", "scheduler", "probe", "rng", "step", "epoch", "batch_in_epoch")
EVAL_CHUNK = 1024


class Divergence(RuntimeError):
    """The training loss became NaN or infinite (recorded in the run's table before stopping)."""


def seed_runs(experiment: ExperimentConfig) -> list[tuple[RunConfig, str]]:
    """(run, directory name) for every run × seed: ``seed, seed + 1, …`` in ``<label>__seed<s>``, or the run
    itself in ``<label>`` when ``experiment.seeds`` is 1."""
    if experiment.seeds < 1:
        raise OptprobeError(f"{experiment.name}: seeds must be at least 1, got {experiment.seeds}")
    if experiment.seeds == 1:
        return [(run, run.label) for run in experiment.runs]
    return [
        (replace(run, seed=seed), seed_dir_name(run.label, seed))
        for run in experiment.runs
        for seed in range(run.seed, run.seed + experiment.seeds)
    ]


def run_one(
    run: RunConfig, run_dir: Path, experiment: ExperimentConfig, device: str = "cpu", progress: bool = True,
    sinks: Sequence[Sink] = (), on_pilot: Callable[[], None] | None = None,
) -> Path:  # fmt: skip
    """Train one run with the Probe attached; skips a finished run and resumes an interrupted one.
    ``sinks`` receive the rows too (e.g. Ray Tune's reporter); ``on_pilot()`` is called before a pilot
    run trains the reference x* (not when it is cached).

    Holds the run directory's lock throughout (a second writer is refused, naming this one's PID), and
    first removes what killed writers left there and in ``_cache``. A divergence under the "stop" policy
    is recorded in run.json (``divergence``: step, loss, policy) and ends the run normally.
    """
    new = not run_dir.exists()
    try:
        with run_dir_lock(run_dir):
            for folder in (run_dir, run_dir.parent / "_cache"):
                remove_dead_temporaries(folder)
            with contextlib.suppress(Divergence):  # recorded in run.json before it is raised
                _train_one(run, run_dir, experiment, device, progress, sinks, on_pilot)
            _drop_checkpoint(run, run_dir)  # the run is finished (diverged or not)
    except BaseException:
        if new:  # an error before the first write leaves no empty run directory behind
            _remove_if_empty(run_dir)
        raise
    return run_dir


def check_experiment(experiment: ExperimentConfig) -> None:
    """Refuse, before anything is written, what only the runner can check: task and curvature options."""
    for run in experiment.runs:
        check_task_options(run.task, run.task_options)
        run.probe.probe_config(run.seed)  # its metric names, which reading the file leaves unchecked
        _curvature(run)


def _remove_if_empty(run_dir: Path) -> None:
    """Remove ``run_dir`` (and then its experiment folder) when nothing but the lock file is in it."""
    for folder in (run_dir, run_dir.parent):
        if folder.is_dir() and {p.name for p in folder.iterdir()} <= {LOCK_NAME}:
            (folder / LOCK_NAME).unlink(missing_ok=True)
            folder.rmdir()


@dataclass
class _Position:
    """Where training stands: steps done, the epoch, and the batches done in that epoch."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0


@dataclass
class _Training:
    """What one run (or its pilot) trains: the model, optimizer and schedule, and how many steps."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    steps_per_epoch: int
    total_steps: int


def _training(run: RunConfig, task: Task, device: str) -> _Training:
    """The model initialised from ``run.seed``, its optimizer and the run's learning-rate schedule."""
    model = _model(run, task, run.seed, device)
    optimizer = _optimizer(run, model)  # draws nothing from the global RNG
    steps_per_epoch = _steps_per_epoch(run, task)
    total_steps = run.max_steps or run.epochs * steps_per_epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(run.schedule, total_steps))
    return _Training(model, optimizer, scheduler, steps_per_epoch, total_steps)


def _train(
    run: RunConfig, task: Task, training: _Training, device: str, at: _Position,
    train_step: Callable[[Batch], Any], after_step: Callable[[Any], None] = lambda loss: None,
    end_epoch: Callable[[], object] = lambda: None,
) -> None:  # fmt: skip
    """The training loop of a run and of its pilot, from ``at`` (advanced in place) to the last step:
    ``train_step(batch)`` (forward, backward, optimizer step; returns the loss) and the schedule's step
    on each batch of :func:`_train_batches`, then ``after_step(loss)``; ``end_epoch()`` at each epoch's
    end, also one still due at ``at`` (a run resumed just after its epoch's last batch)."""
    while True:
        if at.batch_in_epoch == training.steps_per_epoch:
            end_epoch()
            at.epoch, at.batch_in_epoch = at.epoch + 1, 0
        if at.step >= training.total_steps:
            return
        for batch in itertools.islice(_train_batches(run, task, at.epoch, device), at.batch_in_epoch, None):
            loss = train_step(batch)
            training.scheduler.step()
            at.step, at.batch_in_epoch = at.step + 1, at.batch_in_epoch + 1
            after_step(loss)
            if at.step >= training.total_steps:
                break


def _train_one(
    run: RunConfig, run_dir: Path, experiment: ExperimentConfig, device: str = "cpu", progress: bool = True,
    sinks: Sequence[Sink] = (), on_pilot: Callable[[], None] | None = None,
) -> Path:  # fmt: skip
    """:func:`run_one` under the lock."""
    if _finished(run, run_dir):
        return run_dir
    task = build_task(run.task, **run.task_options)
    training = _training(run, task, device)
    reference = _reference(run, task, run_dir.parent / "_cache", device, on_pilot)
    checkpoint = run_dir / CHECKPOINT
    state = _load_checkpoint(checkpoint) if checkpoint.exists() else None
    periodic = _curvature(run)
    probe = Probe(
        training.model, task.loss_fn, config=run.probe.probe_config(run.seed), optimizer=training.optimizer,
        reference=reference, eval_loader=_eval_loader(run, task, device, periodic), periodic=periodic,
        periodic_batch=_curvature_batch(run, task, device), out_dir=run_dir, sinks=sinks,
        if_exists="resume" if state is not None else "overwrite", run_info=_run_info(run, experiment, task),
    )  # fmt: skip
    torch.manual_seed(run.seed)  # training randomness (dropout) must not depend on whether x* was cached
    at = _restore(state, training, probe) if state is not None else _Position()
    save = functools.partial(_save_checkpoint, checkpoint, training, probe, at, device)
    bar = tqdm(total=training.total_steps, initial=at.step, desc=f"{experiment.name}/{run_dir.name}",
               disable=not progress)  # fmt: skip
    finished = False
    started = time.perf_counter()

    def after_step(loss: float) -> None:
        nonlocal finished
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.4g}", refresh=False)
        if not math.isfinite(loss) and run.on_divergence != "skip":
            finished = True  # the table ends at the divergence; running again changes nothing
            record_divergence(run_dir, at.step - 1, loss, run.on_divergence)
            raise Divergence(
                f"{experiment.name}/{run_dir.name}: the loss is {loss} at step {at.step - 1}; the table "
                "holds every step up to it. Lower lr (into a new --out), or set on_divergence='skip' to "
                "skip such steps"
            )
        if at.step % run.checkpoint_every == 0 or interrupted():
            save()
        if interrupted():
            raise KeyboardInterrupt

    try:
        with _interrupts_between_steps() as interrupted:
            step = functools.partial(_train_step, training.model, task, training.optimizer, probe)
            _train(run, task, training, device, at, step, after_step, probe.end_epoch)
            save()
            finished = True
    finally:
        bar.close()
        probe.close(finished=finished)
        spent = float(read_run_info(run_dir).get("wall_seconds") or 0.0)  # earlier sessions of a resumed run
        update_run_info(run_dir, wall_seconds=spent + time.perf_counter() - started)
    return run_dir


def _finished(run: RunConfig, run_dir: Path) -> bool:
    """Whether ``run_dir`` holds this run finished; refuses one made with another configuration or
    damaged (a table without run.json)."""
    if (run_dir / "run.json").exists():
        info = read_run_info(run_dir)
        _check_same_config(info.get("run_config"), asdict(run), run_dir)
        return bool(info.get("finished"))
    if (run_dir / LOG_NAME).exists():  # run.json is written before the first row: the folder is damaged
        raise OptprobeError(
            f"{run_dir} holds a table but no run.json, so it is no run optprobe can resume; delete {run_dir} "
            "to redo the run, or run into a new --out"
        )
    return False


def _run_info(run: RunConfig, experiment: ExperimentConfig, task: Task) -> dict[str, Any]:
    """What run.json records beside the Probe's own entries."""
    return {
        "experiment": experiment.name,
        "finding": experiment.finding,
        "criterion": experiment.criterion,
        "finding_test": experiment.finding_test or experiment.name,
        "label": run.label,
        "task": run.task,
        "optimizer": run.optimizer,
        "lr": run.lr,
        "seed": run.seed,
        "full_batch": _batch_size(run, task) >= len(task.train),
        "random_scaling": run.random_scaling,
        "run_config": asdict(run),
    }


def _restore(state: dict[str, Any], training: _Training, probe: Probe) -> _Position:
    """Load a checkpoint into the training, the Probe and the RNGs; returns where it was saved."""
    training.model.load_state_dict(state["model"])
    training.optimizer.load_state_dict(state["optimizer"])
    training.scheduler.load_state_dict(state["scheduler"])
    probe.load_state_dict(state["probe"])
    torch.set_rng_state(state["rng"])
    if state.get("cuda_rng") is not None:  # dropout on the GPU draws from the CUDA generators
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    return _Position(state["step"], state["epoch"], state["batch_in_epoch"])


def _save_checkpoint(path: Path, training: _Training, probe: Probe, at: _Position, device: str) -> None:
    """Write the checkpoint :func:`_restore` reads: everything a resumed run needs to continue exactly."""
    _save_atomic(
        {
            "model": training.model.state_dict(),
            "optimizer": training.optimizer.state_dict(),
            "scheduler": training.scheduler.state_dict(),
            "probe": probe.state_dict(),
            "rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if device.startswith("cuda") else None,
            "step": at.step,
            "epoch": at.epoch,
            "batch_in_epoch": at.batch_in_epoch,
        },
        path,
    )


def _drop_checkpoint(run: RunConfig, run_dir: Path) -> None:
    """A finished run needs no checkpoint (parameter-sized): delete it unless ``keep_checkpoint``."""
    if not run.keep_checkpoint:
        (run_dir / CHECKPOINT).unlink(missing_ok=True)


def _load_checkpoint(path: Path) -> dict[str, Any]:
    """The run's checkpoint, checked against its table; :class:`OptprobeError` saying what to do when it
    is damaged or belongs to other rows."""
    restart = (
        f"its rows in {path.parent / LOG_NAME} stay readable (optprobe report); to train the run again from "
        f"step 0, delete {path} (the table is then rewritten), or run into a new --out"
    )
    try:
        state = torch.load(path, weights_only=False)
    except (pickle.UnpicklingError, EOFError, RuntimeError, ValueError, zipfile.BadZipFile) as exc:
        raise OptprobeError(f"{path} is damaged ({type(exc).__name__}: {exc}); {restart}") from None
    missing = [] if isinstance(state, dict) else ["a dict"]
    missing += [key for key in _CHECKPOINT_KEYS if isinstance(state, dict) and key not in state]
    if missing:
        raise OptprobeError(f"{path} is not an optprobe checkpoint (lacks {', '.join(missing)}); {restart}")
    rows = state["probe"].get("rows_written", 0) if isinstance(state["probe"], dict) else 0
    log = path.parent / LOG_NAME
    have = len(read_table(path.parent)) if log.exists() else 0
    if have < rows:
        raise OptprobeError(
            f"{path} was saved after row {rows} but {log} holds {have} rows: they do not belong together; "
            f"{restart}"
        )
    return state


def record_divergence(run_dir: Path, step: int, loss: float, policy: str) -> None:
    """Record in run.json that training stopped at ``step`` because the loss became ``loss``."""
    update_run_info(run_dir, divergence={"step": step, "loss": str(loss), "policy": policy})


@contextlib.contextmanager
def _interrupts_between_steps() -> Iterator[Callable[[], bool]]:
    """Let a first Ctrl-C take effect after the current step, so the checkpoint it leaves is consistent
    (the model, optimizer, Probe and step counter all after the same step); a second one stops at once,
    and the run then resumes from its last periodic checkpoint. Yields "was Ctrl-C pressed?"."""
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return
    pressed: list[bool] = []

    def on_interrupt(signum: int, frame: object) -> None:
        if pressed:
            raise KeyboardInterrupt
        pressed.append(True)

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        yield lambda: bool(pressed)
    finally:
        signal.signal(signal.SIGINT, previous)


def _check_same_config(recorded: dict[str, Any] | None, wanted: dict[str, Any], run_dir: Path) -> None:
    """Refuse to skip or resume a run directory that was made with another configuration."""
    if recorded is None:
        return
    changed = changed_settings(_flat(as_stored(recorded)), _flat(as_stored(wanted)), _NOT_RESULTS)
    if changed:
        more = "; …" if len(changed) > 4 else ""
        raise OptprobeError(
            f"{run_dir} holds a run made with another configuration ({'; '.join(changed[:4])}{more}): "
            f"give --out a new directory, or delete {run_dir} to redo it"
        )


def _flat(settings: dict[str, Any]) -> dict[str, Any]:
    """A run's settings with its tables of settings (probe, rotation) spread out as ``probe.every`` …, so
    that a setting newer than a run is found inside them too; a free table (task_options) stays whole,
    since a key added there is a change."""
    flat = dict(settings)
    for name in _SETTINGS_TABLES:
        if isinstance(flat.get(name), dict):
            flat.update({f"{name}.{key}": value for key, value in flat.pop(name).items()})
    return flat


def _train_step(
    model: nn.Module, task: Task, optimizer: torch.optim.Optimizer, probe: Probe, batch: Batch
) -> float:
    probe.begin_step(batch)
    optimizer.zero_grad()
    loss = task.loss_fn(model, batch)
    loss.backward()
    probe.end_step(loss)
    value = float(loss.detach())
    if math.isfinite(value):
        optimizer.step()
    return value


def _model(run: RunConfig, task: Task, seed: int, device: str) -> nn.Module:
    """The task's model, initialised from ``seed``; trained through θ = R w when the run rotates it."""
    torch.manual_seed(seed)
    model = task.model_fn()
    if run.rotation.enabled:
        model = rotate_model(model, run.rotation.rounds, run.rotation.seed, run.rotation.scope)
    return model.to(device)


def _optimizer(run: RunConfig, model: nn.Module) -> torch.optim.Optimizer:
    return build_optimizer(
        run.optimizer, model.named_parameters(), random_scaling=run.random_scaling, seed=run.seed, lr=run.lr,
        **run.optimizer_options,
    )  # fmt: skip


def _steps_per_epoch(run: RunConfig, task: Task) -> int:
    size = _batch_size(run, task)
    return math.ceil(len(task.train) / size)


def _batch_size(run: RunConfig, task: Task) -> int:
    """Examples per step: the whole training set (full_batch), the run's batch_size, or the task's."""
    return len(task.train) if run.full_batch else (run.batch_size or task.batch_size or len(task.train))


def _train_batches(run: RunConfig, task: Task, epoch: int, device: str) -> Iterator[Batch]:
    """The epoch's minibatches, shuffled by a generator seeded from (seed, epoch): a resumed epoch
    yields the same batches in the same order."""
    size = _batch_size(run, task)
    full_batch = size >= len(task.train)
    generator = torch.Generator().manual_seed(1_000_003 * run.seed + epoch)
    loader = DataLoader(task.train, batch_size=size, shuffle=not full_batch, generator=generator)
    for batch in loader:
        yield _to_device(batch, device)


def _eval_loader(
    run: RunConfig, task: Task, device: str, periodic: Sequence[PeriodicMetric] = ()
) -> list[Batch] | None:
    """F's data: chunks of the training set (its first ``eval_size`` examples when set), moved to the
    device once; None when neither a full-batch metric nor a periodic metric of F is asked for."""
    settings = run.probe
    full_batch = settings.full_batch_every or settings.full_batch_at_epoch_end
    if not (full_batch or any(m.measures_f() for m in periodic)):
        return None
    chunks = DataLoader(_head(task.train, run.eval_size), batch_size=EVAL_CHUNK)
    return [_to_device(b, device) for b in chunks]


def _curvature_batch(run: RunConfig, task: Task, device: str) -> Batch | None:
    """The fixed batch curvature is measured on: the first training batch's worth of examples (all of
    them under full-batch GD, so sharpness is that of the training objective)."""
    if not run.curvature:
        return None
    return _to_device(next(iter(DataLoader(task.train, batch_size=_batch_size(run, task)))), device)


def _head(data: Dataset, size: int) -> Dataset:
    return Subset(data, range(size)) if 0 < size < len(data) else data


def _to_device(batch: Batch, device: str) -> Batch:
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    return type(batch)(_to_device(b, device) for b in batch) if isinstance(batch, (list, tuple)) else batch


def _curvature(run: RunConfig) -> list[Any]:
    if not run.curvature:
        return []
    from optprobe.metrics import curvature

    metrics = []
    for spec in run.curvature:
        cls = curvature.PERIODIC_METRICS.get(spec.name)
        if cls is None:
            raise OptprobeError(
                f"run {run.label!r}: unknown curvature metric {spec.name!r}; "
                f"choose from {', '.join(curvature.PERIODIC_METRICS)}"
            )
        signature = inspect.signature(cls)
        try:
            signature.bind(every=spec.every, **spec.options)
        except TypeError as exc:
            options = [name for name in signature.parameters if name != "every"]
            raise OptprobeError(
                f"run {run.label!r}: curvature metric {spec.name!r}: {exc}; its options are {options}"
            ) from None
        options = dict(spec.options)
        if "seed" in signature.parameters:  # sampled probes follow the run's seed unless set explicitly
            options.setdefault("seed", run.seed)
        metrics.append(cls(every=spec.every, **options))
    return metrics


def _schedule(name: str, total_steps: int):  # -> Callable[[int], float]
    """Learning-rate multiplier per step: constant, cosine, step (÷10 at 50% and 75%), warmup_cosine."""
    total = max(total_steps, 1)
    warmup = max(1, total // 20)
    if name == "cosine":
        return lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total))
    if name == "step":
        return lambda s: 0.1 ** ((s >= total // 2) + (s >= 3 * total // 4))
    if name == "warmup_cosine":
        return lambda s: (
            (s + 1) / warmup
            if s < warmup
            else 0.5 * (1 + math.cos(math.pi * (s - warmup) / max(total - warmup, 1)))
        )
    return lambda s: 1.0


def _reference(
    run: RunConfig, task: Task, cache: Path, device: str, on_pilot: Callable[[], None] | None = None
) -> dict[str, torch.Tensor] | None:
    """x*: the task's exact minimizer, or the final iterate of a pilot run with its buffers (cached)."""
    if run.reference == "none":
        return None
    if run.reference == "minimizer":
        if task.reference is None:
            raise OptprobeError(f"task {run.task!r} has no closed-form minimizer; use reference = 'pilot'")
        return task.reference
    seed = run.seed + (1 if run.reference == "pilot_other_seed" else 0)
    pilot = replace(run, label="pilot", seed=seed, curvature=[])
    if run.pilot_epochs:  # the pilot's own length, whatever limits the run itself
        pilot = replace(pilot, epochs=run.pilot_epochs, max_steps=0)
    key = _config_key(pilot)
    path = cache / f"pilot-state-{key}.pt"  # parameters and buffers (older "pilot-" files: parameters only)
    if path.exists():
        return torch.load(path, weights_only=True)
    if on_pilot is not None:
        on_pilot()
    training = _training(pilot, task, device)
    model, optimizer = training.model, training.optimizer

    def pilot_step(batch: Batch) -> None:  # no Probe, and no divergence policy: x* is its last iterate
        optimizer.zero_grad()
        task.loss_fn(model, batch).backward()
        optimizer.step()

    _train(pilot, task, training, device, _Position(), pilot_step)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}  # x* with its running statistics
    cache.mkdir(parents=True, exist_ok=True)
    _save_atomic(state, path)
    return state


def _config_key(run: RunConfig) -> str:
    fields = {
        k: v
        for k, v in asdict(run).items()
        if k not in ("label", "probe", "curvature", "checkpoint_every", *_NOT_RESULTS)
    }
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _save_atomic(obj: Any, path: Path) -> None:
    write_atomic(path, lambda tmp: torch.save(obj, tmp))
