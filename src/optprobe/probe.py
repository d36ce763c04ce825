"""The Probe: attach to a training loop, measure the quantities convergence proofs rely on.

Usage, in a plain PyTorch loop::

    probe = Probe(model, loss_fn, optimizer=opt, out_dir="runs/demo")
    for epoch in range(epochs):
        for batch in loader:
            probe.begin_step(batch)              # before the forward: remembers z_t and its RNG state
            opt.zero_grad()
            loss = loss_fn(model, batch)
            loss.backward()
            probe.end_step(loss)                 # after backward, before opt.step(): measures at x_t
            opt.step()
        probe.end_epoch()
    probe.close()

At each measured step the Probe decides what it needs (the union of its metrics' :class:`Needs`),
evaluates it once through the :class:`~optprobe.evaluation.Evaluator`, reduces the named vectors
per layer in one pass, hands the results to every metric and writes one row to its sinks. F and ∇F at
x_t, too, are computed once per step for all that read them (:class:`~optprobe.full_pass.FullPass`).

The Probe is the schedule (what is due at which call); the work is its collaborators':
:class:`~optprobe.measurement.StepMeasurement` (trajectory metrics),
:class:`~optprobe.eval_measurement.EvalMeasurement` (full-batch and periodic metrics),
:class:`~optprobe.snapshots.Snapshots` (the points held), :mod:`optprobe.step_inputs` (g_t, the loss and
the optimizer's lr and s_t), :class:`~optprobe.run_output.RunOutput` (the run directory and sinks),
:mod:`optprobe.probe_checkpoint` (what a state_dict must match) and :mod:`optprobe.probe_checks`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict
from typing import Any

import torch
from torch import Tensor, nn

from optprobe import probe_checkpoint
from optprobe.distributed import on_every_rank, rank, unwrap
from optprobe.errors import OptprobeError, ProbeWarning
from optprobe.eval_measurement import EvalMeasurement
from optprobe.evaluation import (
    Batch,
    LossFn,
    Params,
    RngState,
    trained_parameters,
)
from optprobe.measurement import Pending, StepMeasurement
from optprobe.metrics import registry
from optprobe.metrics.base import Needs, PeriodicMetric, TrajectoryMetric, as_float
from optprobe.probe_checks import (
    check_batch_device,
    check_real,
    check_reusable,
    check_scalar_loss,
    check_shardable,
    missing_buffers_message,
)
from optprobe.probe_config import FAMILIES, ProbeConfig  # noqa: F401 (FAMILIES: optprobe.probe's name)
from optprobe.reductions import layer_of
from optprobe.reference import load_reference
from optprobe.run_output import RunOutput
from optprobe.sharding import evaluator_for, local
from optprobe.sinks import Sink
from optprobe.snapshots import Snapshots
from optprobe.step_inputs import (
    gradients,
    loss_averaged_over_ranks,
    optimizer_columns,
    scale_and_weight,
    unscale_gradients,
)


class Probe:
    """Measures trajectory, full-batch and periodic metrics of a training run; see the module docstring.

    Args:
        model: the trained module (never copied, never switched between train and eval silently).
        loss_fn: ``loss_fn(model, batch) -> scalar Tensor``, the training objective without weight decay.
        config: a :class:`ProbeConfig` (defaults: every trajectory metric at every step).
        metrics: the trajectory metrics, in place of ``config.metrics``: registered family names and
            :class:`~optprobe.metrics.base.TrajectoryMetric` instances (a class of your own works as is).
        optimizer: the optimizer, read at every step (never copied) for the learning rate of its first
            group and, under random scaling, ``last_scale`` and ``last_weight`` (also found inside a
            wrapper that keeps the optimizer as ``.optimizer``, as accelerate's does).
        reference: x*, as a checkpoint path, a module or a state_dict; adds the ``_ref`` metrics. Passes
            at x* use the buffers it holds (BatchNorm statistics); see :mod:`optprobe.reference`.
        eval_loader: batches that define F for the full-batch metrics, each weighted by its number of
            examples: the leading dimension of its first tensor (put a batch-first tensor first).
        periodic: periodic metrics (curvature), run on ``periodic_batch`` (default: the first
            ``eval_loader`` batch, or else the first training batch they are due on).
        out_dir: run directory (default ``runs/<time>``); ``None`` with ``sinks`` given writes no table.
        sinks: more sinks (TensorBoard, W&B, …) that receive every row.
        if_exists: what to do when ``out_dir`` already holds a run: "error", "overwrite" or "resume"
            (keep its rows; call :meth:`load_state_dict` to continue from a checkpoint).
        grad_scaler: the ``torch.amp.GradScaler`` of a mixed-precision loop. ``.grad`` then holds scaled
            gradients; on measured steps the Probe unscales them in place (``grad_scaler.unscale_``, as
            gradient clipping does) unless you already have, so call your own ``unscale_`` (for
            clipping) before ``end_step``, not after. Put ``torch.autocast`` inside ``loss_fn``, so the
            Probe's passes run in the precision training runs in.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        *,
        config: ProbeConfig | None = None,
        metrics: Sequence[str | TrajectoryMetric] | None = None,
        optimizer: torch.optim.Optimizer | None = None,
        reference: str | os.PathLike[str] | nn.Module | Mapping[str, Tensor] | None = None,
        eval_loader: Iterable[Batch] | None = None,
        periodic: Sequence[PeriodicMetric] = (),
        periodic_batch: Batch | None = None,
        out_dir: str | os.PathLike[str] | None = "auto",
        sinks: Sequence[Sink] = (),
        if_exists: str = "error",
        run_info: Mapping[str, Any] | None = None,
        grad_scaler: torch.amp.GradScaler | None = None,
    ) -> None:
        if grad_scaler is not None and optimizer is None:
            raise OptprobeError("grad_scaler needs the optimizer: Probe(..., optimizer=opt, grad_scaler=s)")
        self.grad_scaler = grad_scaler
        model = unwrap(model)  # under DDP: the module; the probe's own passes reduce across ranks
        self.model = model
        self.config = config or ProbeConfig()
        if metrics is not None:  # the config records the family names; run.json also the classes
            names = [m for m in metrics if isinstance(m, str)]
            self.config = dataclasses.replace(self.config, metrics=tuple(names))
        self.optimizer = optimizer
        self.evaluator = evaluator_for(model, loss_fn)  # under fully_shard: passes on local shards
        if self.evaluator.sharded:
            check_shardable(periodic)
        self.params = trained_parameters(model)
        check_real(self.params)
        self.names = list(self.params)
        self.param_layers = [layer_of(n) for n in self.names]
        self.layers = list(dict.fromkeys(self.param_layers))
        self.warnings: Counter[str] = Counter()
        ref = None if reference is None else load_reference(reference, model, self.params)
        self.reference = None if ref is None else ref.params
        self.reference_buffers = None if ref is None else ref.buffers  # every pass at x* uses them
        if ref is not None and ref.missing_buffers and self.config.eval_mode:
            self._warn("reference_without_buffers", missing_buffers_message(ref.missing_buffers))
        check_reusable(eval_loader)
        self.metrics = self._build_metrics(self.config.metrics if metrics is None else metrics)
        for metric in self.metrics:
            metric.needs.check(type(metric).__name__)
        given = {} if ref is None else {"ref": (self.reference, self.reference_buffers)}
        needs = Needs.union(m.needs for m in self.metrics)
        self._snapshots = Snapshots(needs.points, given)
        self._measurement = StepMeasurement(
            self.metrics, self.evaluator, self.names, self.param_layers, self._snapshots, self._warn,
            zero_update_undefined="smoothness" in self.config.metrics,  # Δ_t = 0: smoothness is 0/0
            compiled=self.config.compile_reductions,
        )  # fmt: skip
        self.eval_loader = eval_loader
        self._eval_measurement = EvalMeasurement(
            model, self.evaluator, self.config, eval_loader, ref, periodic, self.params, self.param_layers,
            self._warn,
        )  # fmt: skip
        self.fullbatch, self.periodic = self._eval_measurement.fullbatch, self._eval_measurement.periodic
        self.periodic_batch = periodic_batch
        self.step = 0
        self.epoch = 0
        self._pending: Pending | None = None
        self._closed = False
        probe_info = {
            "probe_config": asdict(self.config),
            "metric_classes": [type(m).__name__ for m in self.metrics],
            "model": {"parameters": sum(p.numel() for p in self.params.values()), "layers": self.layers},
            "reference": self.reference is not None,
        }
        writer = rank() == 0  # one writer under data parallelism
        self._output = on_every_rank(
            lambda: RunOutput(
                out_dir if writer else None, if_exists, sinks if writer else (), probe_info, run_info
            ),
            next(iter(self.params.values())).device,
        )
        self.run_dir, self.sinks = self._output.run_dir, self._output.sinks
        self._output.start_sinks(asdict(self.config))

    # ----------------------------------------------------------------------------------- set-up
    def _build_metrics(self, entries: Sequence[str | TrajectoryMetric]) -> list[TrajectoryMetric]:
        c = self.config
        targets = ("prev", "ref") if self.reference is not None else ("prev",)
        return registry.build(entries, registry.Setup(c.betas, c.per_layer, targets))

    # ------------------------------------------------------------------------------- the loop
    def begin_step(self, batch: Batch) -> None:
        """Call before the forward pass of each training step: remembers z_t and the RNG state.

        With gradient accumulation, call it once per optimizer step with the list of micro-batches (fill
        the list as you go) and give the Probe a ``loss_fn`` that averages the loss over that list.
        """
        self._check_open()
        if self._pending is not None:
            raise OptprobeError(
                "begin_step() was called twice without end_step(): the Probe measures one optimizer step at "
                "a time. With gradient accumulation, call begin_step(micro_batches) once per optimizer step "
                "with the list of its micro-batches, and make loss_fn(model, micro_batches) their mean loss"
            )
        param_device = next(iter(self.params.values())).device
        check_batch_device(batch, param_device)
        self._pending = Pending(batch, RngState.capture(param_device) if self.config.replay_rng else None)

    def end_step(self, loss: Tensor | float | None = None) -> dict[str, Any] | None:
        """Call after ``loss.backward()`` and before ``optimizer.step()``; returns the row if one was written.

        ``loss`` is ℓ(x_t, z_t) from the training forward; with ``None`` the Probe recomputes it
        (one more forward, same RNG).
        """
        self._check_open()
        if self._pending is None:
            raise OptprobeError(
                "end_step() needs a matching begin_step(batch) before the forward pass of the same step"
            )
        pending, self._pending = self._pending, None
        check_scalar_loss(loss)
        t = self.step
        row = None
        self._snapshots.before_measuring(self._point)
        if self._due(t):
            unscale_gradients(self.grad_scaler, self.optimizer)
            row = self._measure_step(t, pending, loss)
        self._snapshots.after_step(t, self._point, self._trajectory_due)
        self.step += 1
        return row

    def end_epoch(self) -> dict[str, Any] | None:
        """Call at each epoch end: full-batch metrics at the current point, then a new window."""
        self._check_open()
        row = None
        if self.fullbatch is not None and self.config.full_batch_at_epoch_end:
            row = {"step": self.step, "epoch": self.epoch, "event": "epoch_end"}
            row.update(self._eval_measurement.full_batch(self.step, self._point, None))
            self._output.write(row)
            self._eval_measurement.full_batch_at = self.step  # x_step: where the next end_step would measure
        self.epoch += 1
        if self.config.window == "epoch":
            for metric in self.metrics:
                metric.reset_window()
        return row

    def close(self, finished: bool = True) -> None:
        """Flush and close every sink; record in ``run.json`` whether the run finished (``False``: it was
        interrupted and can be resumed)."""
        if self._closed:
            return
        self._closed = True
        self._output.close(finished=finished, steps=self.step, warnings=dict(self.warnings))

    def __enter__(self) -> Probe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --------------------------------------------------------------------------- measurement
    def _trajectory_due(self, t: int) -> bool:
        return bool(self.metrics) and t % self.config.every == 0

    def _due(self, t: int) -> bool:
        evals = self._eval_measurement
        return self._trajectory_due(t) or evals.full_batch_due(t) or any(m.due(t) for m in self.periodic)

    def _measure_step(self, t: int, pending: Pending, loss: Tensor | float | None) -> dict[str, Any]:
        grads = gradients(self.model, self.params)
        if loss is None:
            loss = self.evaluator.loss(self._point(), pending.batch, pending.rng)
        loss = loss_averaged_over_ranks(loss, next(iter(self.params.values())).device)
        row: dict[str, Any] = {"step": t, "epoch": self.epoch, "event": "step", "loss": math.nan}
        row.update(optimizer_columns(self.optimizer))
        if self._trajectory_due(t):  # the loss comes to the host with the step's other scalars
            row["loss"], columns = self._measurement.measure(
                t, self.epoch, self._point(), grads, loss, pending, *scale_and_weight(self.optimizer)
            )
            row.update(columns)
        else:
            row["loss"] = as_float(loss)
        if not math.isfinite(row["loss"]):
            self._warn("non_finite_loss", f"step {t}: the training loss is {row['loss']}; metrics are NaN")
        evals = self._eval_measurement
        full = evals.shared_pass(t, self._point)  # ∇F(x_t) once for this step's consumers, dropped with it
        if self.fullbatch is not None and evals.full_batch_due(t):
            row.update(evals.full_batch(t, self._point, grads, full))
        for metric in self.periodic:
            if metric.due(t):
                batch = self._periodic_batch(pending.batch)
                row.update(evals.periodic_metric(metric, t, self._point, batch, full))
        self._output.write(row)
        return row

    def _periodic_batch(self, batch: Batch) -> Batch:
        """The batch periodic metrics run on: ``periodic_batch``, else eval_loader's first, else ``batch``."""
        if self.periodic_batch is None:
            self.periodic_batch = next(iter(self.eval_loader)) if self.eval_loader is not None else batch
        return self.periodic_batch

    def _point(self) -> Params:
        """x_t as the probe holds points: whole tensors, or this rank's shards under fully_shard."""
        return {name: local(p.detach()) for name, p in self.params.items()}

    def _check_open(self) -> None:
        if self._closed:
            raise OptprobeError("this Probe is closed; build a new one (if_exists='resume' continues a run)")

    def _warn(self, reason: str, message: str) -> None:
        if self.warnings[reason] == 0:
            warnings.warn(f"optprobe: {message} (further cases are only counted)", ProbeWarning, stacklevel=4)
        self.warnings[reason] += 1

    @property
    def rows_written(self) -> int:
        """How many rows the sinks have received, a resumed run's earlier rows included."""
        return self._output.rows_written

    @property
    def last_row(self) -> dict[str, Any] | None:
        """The latest row written (step or epoch end), or None before the first."""
        return self._output.last_row

    def table(self):  # -> pandas.DataFrame
        """Every row written so far, read back from the run directory."""
        return self._output.table()

    # ------------------------------------------------------------------------------- resume
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue with identical metric values (save it with your checkpoint)."""
        return {
            "version": probe_checkpoint.VERSION,
            **self._identity(),
            "shapes": [list(p.shape) for p in self.params.values()],
            "step": self.step,
            "epoch": self.epoch,
            "rows_written": self.rows_written,
            "metrics": [m.state_dict() for m in self.metrics],
            "fullbatch": None if self.fullbatch is None else self.fullbatch.state_dict(),
            "snapshots": self._snapshots.state_dict(),
            "warnings": dict(self.warnings),
            "periodic_batch": self.periodic_batch,
            "periodic": [m.state_dict() for m in self.periodic],
            "full_batch_at": self._eval_measurement.full_batch_at,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`; the run directory's table is cut back to the checkpoint's rows."""
        probe_checkpoint.check_fits(state, self._identity(), self.params, len(self.metrics))
        self.step, self.epoch = int(state["step"]), int(state["epoch"])
        for metric, metric_state in zip(self.metrics, state["metrics"], strict=True):
            metric.load_state_dict(metric_state)
        if self.fullbatch is not None and state["fullbatch"] is not None:
            self.fullbatch.load_state_dict(state["fullbatch"])
        self._snapshots.load_state_dict(
            probe_checkpoint.saved_snapshots(state, self.step),
            lambda p: {k: v.to(self.params[k].device) for k, v in p.items()},
            self.step > 0,
        )
        self.warnings = Counter(state["warnings"])
        self.periodic_batch = state.get("periodic_batch", self.periodic_batch)
        for metric, metric_state in zip(self.periodic, state.get("periodic", ()), strict=False):
            metric.load_state_dict(metric_state)  # checkpoints from before periodic state restore nothing
        self._eval_measurement.full_batch_at = state.get("full_batch_at")
        self._output.resume_at(int(state["rows_written"]))  # the table is cut back to the saved rows

    def _identity(self) -> dict[str, Any]:
        return probe_checkpoint.identity(self.config, self.metrics, self.reference is not None, self.names)
