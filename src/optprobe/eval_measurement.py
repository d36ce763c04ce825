"""The full-batch and periodic metrics at x_t: passes in eval mode when configured, under the configured
seed, and one pass over F shared by a step's consumers of ∇F (:class:`~optprobe.full_pass.FullPass`).

The Probe decides when they are due (:meth:`EvalMeasurement.full_batch_due`, a periodic metric's
``due``) and which batch periodic metrics run on; this measures them and returns their columns.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Iterator, Sequence

import torch
from torch import nn

from optprobe.evaluation import Batch, Evaluator, Params, cuda_devices
from optprobe.full_pass import FullPass
from optprobe.measurement import Warn
from optprobe.metrics.base import PeriodicMetric
from optprobe.metrics.fullbatch import FullBatchMetrics
from optprobe.probe_config import ProbeConfig
from optprobe.reference import Reference


class EvalMeasurement:
    """Measures the full-batch metrics of F over ``eval_loader`` (``fullbatch``; none without a loader)
    and the ``periodic`` metrics at x_t.

    ``reference``: x* for the ``ref_full_loss`` columns; ``params``: the trained tensors (the RNG of their
    CUDA devices is forked around periodic passes); ``warn``: the Probe's counted warnings.
    ``full_batch_at`` is the step whose point an epoch end measured (a step there is not measured again).
    """

    def __init__(
        self,
        model: nn.Module,
        evaluator: Evaluator,
        config: ProbeConfig,
        eval_loader: Iterable[Batch] | None,
        reference: Reference | None,
        periodic: Sequence[PeriodicMetric],
        params: Params,
        param_layers: list[str],
        warn: Warn,
    ) -> None:
        self.model, self.evaluator, self.config, self.eval_loader = model, evaluator, config, eval_loader
        self.fullbatch = (
            None
            if eval_loader is None
            else FullBatchMetrics(
                eval_loader,
                None if reference is None else reference.params,
                config.seed,
                config.per_layer,
                None if reference is None else reference.buffers,
            )
        )
        self.periodic = list(periodic)
        for metric in self.periodic:  # metrics of F (``on="eval"``) take its loader and seed here
            metric.attach(eval_loader, config.seed)
        self.params, self.param_layers = params, param_layers
        self.warn = warn
        self.full_batch_at: int | None = None

    def full_batch_due(self, t: int) -> bool:
        """Whether step t measures full-batch metrics: every k steps, unless an epoch end just did at x_t."""
        every = self.config.full_batch_every
        return bool(self.fullbatch and every and t % every == 0 and t != self.full_batch_at)

    def shared_pass(self, t: int, point: Callable[[], Params]) -> FullPass | None:
        """The pass over F at x_t shared by step t's full-batch metrics and periodic metrics of ∇F."""
        uses = int(self.fullbatch is not None and self.full_batch_due(t))
        uses += sum(metric.due(t) and metric.reads_full_grad() for metric in self.periodic)
        if self.eval_loader is None or uses == 0:
            return None
        return FullPass(self.evaluator, point(), self.eval_loader, self.config.seed, uses)

    def full_batch(
        self, t: int, point: Callable[[], Params], grads: Params | None, full: FullPass | None = None
    ) -> dict[str, float]:
        """Full-batch metrics at x_t (in eval mode when configured); a non-finite F is a counted warning."""
        assert self.fullbatch is not None
        x = point() if full is None else full.params
        with self._eval_mode():
            row = self.fullbatch.measure(self.evaluator, x, grads, self.param_layers, full)
        bad = {k: row[k] for k in ("full_loss", "ref_full_loss") if k in row and not math.isfinite(row[k])}
        if bad:
            found = ", ".join(f"{k} = {v}" for k, v in bad.items())
            self.warn(
                "non_finite_full_loss",
                f"step {t}: the full-batch loss is not finite ({found}); look for NaN or inf in the "
                "evaluation data or the loss",
            )
        return row

    def periodic_metric(
        self, metric: PeriodicMetric, t: int, point: Callable[[], Params], batch: Batch, full: FullPass | None
    ) -> dict[str, float]:
        """``metric`` at x_t on ``batch`` after ``torch.manual_seed(seed)``, the global RNG restored after."""
        with self._eval_mode(), torch.random.fork_rng(devices=cuda_devices(self.params)):
            torch.manual_seed(self.config.seed)
            if full is None:
                return metric.compute(self.evaluator, point(), batch, t)
            return metric.compute_shared(self.evaluator, full.params, batch, t, full)

    @contextlib.contextmanager
    def _eval_mode(self) -> Iterator[None]:
        """``model.eval()`` inside (each module's own mode restored after) when ``config.eval_mode``."""
        if not self.config.eval_mode:
            yield
            return
        modes = [(m, m.training) for m in self.model.modules()]
        self.model.eval()
        try:
            yield
        finally:
            for module, training in modes:
                module.train(training)
