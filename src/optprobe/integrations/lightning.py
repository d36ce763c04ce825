"""Lightning integration: ``OptprobeCallback`` probes every optimizer step of ``Trainer.fit``.

One Probe step is one optimizer step; with ``accumulate_grad_batches = k`` its batch is the list of the
window's micro-batches and its loss Σ_i ℓ_i / k, the objective Lightning backpropagates (it divides each
micro-batch loss by k, also in an epoch's last, shorter window). Each micro-batch's RNG state is
replayed before its own forward, so dropout masks match even when the data pipeline draws random
numbers while Lightning prefetches the next micro-batch. Gradients are
measured in ``on_before_optimizer_step``: accumulated, unscaled under AMP, and not yet clipped.
The Probe's passes run in the precision plugin's training context, so mixed precision is measured
as trained. By default the loss is ``pl_module.training_step(batch, batch_idx)`` (a tensor, or a
dict with ``"loss"``), with ``self.log`` muted during the Probe's passes; pass ``loss_fn`` to override.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import Any

import torch

from optprobe.errors import OptprobeError
from optprobe.evaluation import RngState
from optprobe.integrations import Window, trainer_scalars
from optprobe.probe import Probe, ProbeConfig


def _lightning() -> Any:
    try:
        import lightning.pytorch as pl
    except ImportError:
        raise OptprobeError("the Lightning integration needs lightning: pip install lightning") from None
    return pl


def OptprobeCallback(  # noqa: N802 - a factory standing in for the class, which needs lightning to exist
    config: ProbeConfig | None = None,
    loss_fn: Callable[[torch.nn.Module, Any], torch.Tensor] | None = None,
    **probe_kwargs: Any,
) -> Any:
    """A ``lightning.pytorch.Callback`` that attaches a Probe at ``fit`` start (see the module docstring)."""
    return _callback_class()(config, loss_fn, probe_kwargs)


@contextlib.contextmanager
def _muted_logging(module: Any) -> Iterator[None]:
    log, log_dict = module.log, module.log_dict
    module.log = module.log_dict = lambda *a, **k: None
    try:
        yield
    finally:
        module.log, module.log_dict = log, log_dict


def _replaying(batches: list[tuple[Any, int, RngState | None]]) -> bool:
    """Whether this pass replays the step's random numbers: the Evaluator has just rewound the RNG to the
    state captured before the window's first forward (not in seeded periodic passes, nor without replay)."""
    first = batches[0][2] if batches else None
    return first is not None and torch.equal(torch.get_rng_state(), first.cpu)


@functools.cache
def _callback_class() -> type:
    """Defined on first use so that importing optprobe needs no lightning."""

    class ProbeCallback(_lightning().Callback):
        def __init__(self, config: ProbeConfig | None, loss_fn: Callable | None, kwargs: dict) -> None:
            self.config, self.user_loss, self.kwargs = config, loss_fn, kwargs
            self.probe: Probe | None = None
            self.batches = Window()
            self.trainer: Any = None

        def _loss(self, model: Any, batches: Any) -> torch.Tensor:
            if not isinstance(batches, Window):  # an evaluation or curvature batch: one forward, unscaled
                batches = [(batches, 0, None)]
                scale = 1
            else:
                scale = self.trainer.accumulate_grad_batches
            replaying = _replaying(batches)
            with self.trainer.precision_plugin.train_step_context(), _muted_logging(model):
                losses = []
                for batch, index, rng in batches:
                    if replaying and rng is not None:
                        rng.restore()  # inside the Evaluator's fork_rng: training's RNG stream is untouched
                    out = (
                        self.user_loss(model, batch) if self.user_loss else model.training_step(batch, index)
                    )
                    losses.append(out["loss"] if isinstance(out, dict) else out)
            # Lightning divides each micro-batch loss by accumulate_grad_batches, in a last short window too
            return torch.stack([loss.float() for loss in losses]).sum() / scale

        def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
            self.trainer = trainer
            optimizer = trainer.optimizers[0] if trainer.optimizers else None
            self.probe = Probe(pl_module, self._loss, config=self.config, optimizer=optimizer, **self.kwargs)

        def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
            if not self.batches:
                # the list is the step's batch: it fills up with the window's micro-batches before end_step
                self.probe.begin_step(self.batches)
            # each micro-batch's own RNG state: Lightning fetches the next batch (and a data pipeline may draw
            # random numbers) between micro-batches, so the window's first state cannot replay the later ones
            device = next(iter(self.probe.params.values())).device
            rng = RngState.capture(device) if self.probe.config.replay_rng else None
            self.batches.append((batch, batch_idx, rng))

        def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
            row = self.probe.end_step(None)
            self.batches = Window()
            if row is not None:
                scalars = trainer_scalars(row, self.probe.config.betas)
                if scalars:
                    pl_module.log_dict(scalars, on_step=True, on_epoch=False)

        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            self.probe.end_epoch()

        def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
            self.probe.close()

    return ProbeCallback
