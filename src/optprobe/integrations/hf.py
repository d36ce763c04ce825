"""Hugging Face ``Trainer`` integration: ``attach(trainer, ...)`` adds a Probe to a Trainer run.

One Probe step is one optimizer step. With gradient accumulation its batch is the list of the step's
micro-batches, and its loss is the objective whose gradient the Trainer accumulates:
Σ_i compute_loss(micro-batch i), divided by the accumulation steps exactly where ``training_step``
divides it (``Trainer.loss_is_scaled_for_ga``, or by default when the loss is not normalized by
``num_items_in_batch``), under the Trainer's own autocast context, so bf16 runs are measured in bf16.
The gradient is measured **before clipping** (the Trainer clips before ``on_pre_optimizer_step``, and
a clipped g_t would not be ∇ℓ(x_t, z_t)). fp16 with a GradScaler is refused: its gradients are scaled
until clipping.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

import torch

from optprobe.distributed import unwrap
from optprobe.errors import OptprobeError
from optprobe.integrations import Window, trainer_scalars
from optprobe.probe import Probe, ProbeConfig


def _transformers() -> Any:
    try:
        import transformers
    except ImportError:
        raise OptprobeError(
            "the Hugging Face integration needs transformers: pip install transformers"
        ) from None
    return transformers


def attach(
    trainer: Any, config: ProbeConfig | None = None, log_every: int | None = None, **probe_kwargs: Any
) -> Probe:
    """Attach a Probe to ``trainer`` (before ``trainer.train()``); returns it.

    ``probe_kwargs`` go to :class:`~optprobe.probe.Probe` (``out_dir``, ``eval_loader``, ``reference``,
    ``periodic``, ``sinks`` …); the run directory and sinks get every measured step. A few metrics also
    go to the Trainer's log (and so to its ``report_to`` integrations): by default inside the Trainer's
    own log dicts, on the steps it logs (``logging_steps``, ``logging_strategy``), each metric's latest
    value since its last log; with ``log_every=k``, every k measured steps in a dict of their own
    (``log_every=1``: every measured step); with ``log_every=0``, never.
    """
    if trainer.args.fp16:
        raise OptprobeError("optprobe measures unscaled gradients: train with bf16=True or in fp32, not fp16")
    bad = isinstance(log_every, bool) or not isinstance(log_every, (int, type(None))) or (log_every or 0) < 0
    if bad:
        raise OptprobeError(
            f"log_every must be None (the Trainer's logging steps) or an integer ≥ 0, got {log_every!r}"
        )
    callback = _callback_class()(trainer, config, log_every, probe_kwargs)
    trainer.add_callback(callback)
    training_step, clip, log = trainer.training_step, trainer._clip_grad_norm, trainer.log

    def probed_training_step(model: Any, inputs: Any, num_items_in_batch: Any = None) -> torch.Tensor:
        callback.micro_batch(inputs, num_items_in_batch)
        return training_step(model, inputs, num_items_in_batch)

    def probed_clip(model: Any) -> Any:
        callback.measure()
        return clip(model)

    def probed_log(logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        return log(callback.with_probe_values(logs), *args, **kwargs)

    trainer.training_step = probed_training_step
    trainer._clip_grad_norm = probed_clip
    trainer.log = probed_log
    return callback.probe


@functools.cache
def _callback_class() -> type:
    """The TrainerCallback subclass, defined on first use so that importing optprobe needs no transformers."""

    class ProbeCallback(_transformers().TrainerCallback):
        """Feeds the Trainer's optimizer steps to a Probe (see the module docstring)."""

        def __init__(
            self, trainer: Any, config: ProbeConfig | None, log_every: int | None, kwargs: dict
        ) -> None:
            self.trainer = trainer
            self.log_every = log_every
            self.unlogged: dict[str, float] = {}  # the latest values since the Trainer's last log
            self.log_due = False  # the Trainer logs its training values next
            self.batches = Window()
            self.num_items: Any = None
            self.measured = False
            self.probe = Probe(
                trainer.model, self._loss, config=config, optimizer=trainer.optimizer, **kwargs
            )

        def _loss(self, model: Any, batches: Any) -> torch.Tensor:
            trainer = self.trainer
            if not isinstance(batches, Window):  # an evaluation or curvature batch: one unscaled forward
                with trainer.compute_loss_context_manager():
                    return trainer.compute_loss(model, copy.copy(batches))
            total = 0.0
            for inputs in batches:
                with trainer.compute_loss_context_manager():
                    # a shallow copy each pass: compute_loss pops "labels" (label smoothing,
                    # compute_loss_func) from its dict, and the probe evaluates a micro-batch several times
                    loss = trainer.compute_loss(model, copy.copy(inputs), num_items_in_batch=self.num_items)
                if not self._loss_is_scaled_for_ga():
                    loss = loss / trainer.current_gradient_accumulation_steps
                total = total + loss
            return total

        def _loss_is_scaled_for_ga(self) -> bool:
            """Trainer.training_step's rule: whether it takes compute_loss's value without dividing it."""
            trainer = self.trainer
            scaled = getattr(trainer, "loss_is_scaled_for_ga", None)  # a subclass's own say comes first
            if scaled is not None:
                return bool(scaled)
            # by default, scaled when normalized by num_items_in_batch, by the model or by compute_loss_func
            by_model = trainer.model_accepts_loss_kwargs and self.num_items is not None
            return bool(by_model or trainer.compute_loss_func is not None)

        def micro_batch(self, inputs: Any, num_items_in_batch: Any) -> None:
            if not self.batches:
                # the RNG state before the first micro-batch's forward; the list object is the step's batch
                # and fills up with the remaining micro-batches before end_step reads it
                self.probe.begin_step(self.batches)
            self.batches.append(inputs)
            self.num_items = num_items_in_batch

        def measure(self) -> None:
            if self.measured or not self.batches:
                return
            self.measured = True
            if self.probe.optimizer is None:
                self.probe.optimizer = self.trainer.optimizer
            row = self.probe.end_step(None)
            self.batches = Window()
            self._to_log(row)

        def _to_log(self, row: dict[str, Any] | None) -> None:
            if row is None or self.log_every == 0:
                return
            scalars = trainer_scalars(row, self.probe.config.betas)
            if self.log_every is None:  # at the Trainer's next training log
                self.unlogged.update(scalars)
            elif scalars and (self.probe.rows_written - 1) % self.log_every == 0:
                self.trainer.log(scalars)

        def with_probe_values(self, logs: dict[str, float]) -> dict[str, float]:
            """The Trainer's log dict, with the values not logged yet when it is the training log of a step
            the Trainer's own callback chose to log (``control.should_log``)."""
            if not self.log_due:
                return logs
            self.log_due = False
            logs, self.unlogged = {**logs, **self.unlogged}, {}
            return logs

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if unwrap(self.trainer.model) is not self.probe.model:
                raise OptprobeError(
                    "the Trainer trains another model than the one attach() saw (model_init builds a new "
                    "one in every train()): give the Trainer model=..., not model_init, to probe it"
                )

        def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.measure()  # without clipping, the gradient is first complete here

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.measured = False
            self.log_due = bool(control.should_log)  # set by DefaultFlowCallback, which runs first

        def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self._to_log(self.probe.end_epoch())
            self.log_due = bool(control.should_log)  # logging_strategy="epoch"

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.probe.close()

    return ProbeCallback
