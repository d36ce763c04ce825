"""One measured step of the trajectory metrics: passes at the held points, one reduction, the rows.

The Probe (the loop and its schedule) hands :meth:`StepMeasurement.measure` x_t, g_t and the step's
batch; the measurement plans one pass per point where a loss or gradient is needed (the order of
:data:`~optprobe.reductions.POINTS`), streams each gradient into the per-layer reduction of the needed
vectors, and gives every metric the same :class:`~optprobe.metrics.base.StepData`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from optprobe.evaluation import Batch, Evaluator, Params, RngState, detached_copy
from optprobe.metrics.base import Needs, StepData, TrajectoryMetric
from optprobe.reductions import (
    POINTS,
    VECTORS,
    Reduced,
    Reduction,
    Workspace,
    available,
    gradient_source,
)
from optprobe.snapshots import Snapshots

Warn = Callable[[str, str], None]  # warn(reason, message): counted, shown once per reason
Pass = tuple[str | None, set[tuple[str, str]], set[str], set[str]]


@dataclass
class Pending:
    """The step being measured: its batch z_t and the RNG state before its forward (for replay)."""

    batch: Batch
    rng: RngState | None


class StepMeasurement:
    """Evaluates the union of the metrics' :class:`Needs` at a step and returns their columns.

    ``names``/``param_layers``: the trained tensors and their layers; ``snapshots``: the points held;
    ``warn``: the Probe's counted warnings; ``zero_update_undefined``: whether Δ_t = 0 makes a measured
    metric undefined (smoothness against x_{t−1}), which is then warned about; ``compiled``: reduce large
    tensors with compiled kernels (``ProbeConfig.compile_reductions``).
    """

    def __init__(
        self,
        metrics: Sequence[TrajectoryMetric],
        evaluator: Evaluator,
        names: list[str],
        param_layers: list[str],
        snapshots: Snapshots,
        warn: Warn,
        zero_update_undefined: bool,
        compiled: bool = False,
    ) -> None:
        self.metrics = list(metrics)
        self.needs = Needs.union(m.needs for m in self.metrics) | Needs(dots=frozenset({("g", "g")}))
        self.evaluator = evaluator
        self.names, self.param_layers = names, param_layers
        self.layers = list(dict.fromkeys(param_layers))
        self.snapshots = snapshots
        self.warn = warn
        self.zero_update_undefined = zero_update_undefined
        self.workspace = Workspace(compiled, lambda message: warn("compile_failed", message))

    def measure(
        self, t: int, epoch: int, x: Params, grads: Params, loss: Tensor, pending: Pending,
        scale: float = 1.0, scale_weight: float = 1.0,
    ) -> tuple[float, dict[str, float]]:  # fmt: skip
        """(ℓ(x_t, z_t), every metric's columns) at step t, for x = x_t, grads = g_t and loss = ℓ(x_t, z_t).

        The step's scalars (the losses, every reduction) stay on the device until the end, where they are
        copied to the host in one transfer: a step waits for the device once. A non-finite training loss
        makes every metric at another point NaN (its passes still run: nothing is read before the copy).
        """
        if self.evaluator.sharded:  # passes at x_(t-1) and x* load them into the live shards of x_t
            x = detached_copy(x)
        points = self.snapshots.at(t)
        sources: dict[str, Mapping[str, Tensor]] = {"g": grads, "x": x, **points}
        losses: dict[str, Tensor] = {}
        reductions: list[Reduction] = []
        for point, dots, l1, linf in self._passes(points):
            grad_source = gradient_source(point) if point in self.needs.grads else None
            buffers = None if point is None else self.snapshots.buffers(point)
            with self.evaluator.buffers_of(buffers) if buffers is not None else contextlib.nullcontext():
                point_loss, reduction = self._measure_at(
                    points.get(point), grad_source, sources, dots, l1, linf, pending
                )
            if point is not None and point_loss is not None:
                losses[point] = point_loss
            reductions.append(reduction)
        loss_value, point_losses, reduced = self._to_host(loss, losses, reductions)
        if not math.isfinite(loss_value):  # as if no other point were held at this step
            point_losses = {}
            reduced = tuple(
                {k: v for k, v in part.items() if all(available(v, ("g", "x")) for v in _vectors(k))}
                for part in reduced
            )  # type: ignore[assignment]
        data = StepData(
            step=t, epoch=epoch, layers=self.layers, loss=loss_value, losses=point_losses, scale=scale,
            scale_weight=scale_weight, dots=reduced[0], l1=reduced[1], linf=reduced[2],
        )  # fmt: skip
        self._check_step(data)
        row: dict[str, float] = {}
        for metric in self.metrics:
            row.update(metric.update(data))
        return loss_value, row

    def _to_host(
        self, loss: Tensor, losses: Mapping[str, Tensor], reductions: Sequence[Reduction]
    ) -> tuple[float, dict[str, float], Reduced]:
        """The step's scalars as Python floats, copied from the device in one transfer."""
        device = loss.device
        tables = [r.gathered(self.names, self.param_layers) for r in reductions]
        point_losses = [v.double().to(device) for v in losses.values()]
        scalars = torch.stack([loss.detach().reshape(()).double(), *point_losses])
        flat = torch.cat([scalars, *(t.to(device).reshape(-1) for t in tables if t is not None)])
        values = flat.tolist()  # the step's one device synchronisation
        at = 1 + len(losses)
        by_point = dict(zip(losses, values[1:at], strict=True))
        reduced: Reduced = ({}, {}, {})
        for reduction, table in zip(reductions, tables, strict=True):
            rows: list[list[float]] = []
            if table is not None:
                n_rows, width = table.shape
                rows = [values[at + i * width : at + (i + 1) * width] for i in range(n_rows)]
                at += n_rows * width
            for into, part in zip(reduced, reduction.unpack(rows), strict=True):
                into.update(part)
        return values[0], by_point, reduced

    def _passes(self, points: Mapping[str, Params]) -> list[Pass]:
        """(point, dots, l1, linf) for each pass of a step, in the order of POINTS: one pass at each held
        point where a loss or gradient is needed; what reads a gradient goes to that point's pass, the rest
        to the first pass (or to a reduction without a pass when no point needs one)."""
        needs = self.needs
        at = [p for p in POINTS if p in points and p in needs.losses | needs.grads]
        first = at[0] if at else None
        plan: dict[str | None, tuple[set[tuple[str, str]], set[str], set[str]]]
        plan = {p: (set(), set(), set()) for p in at or [None]}
        for pair in needs.dots:
            owner = VECTORS[pair[0]].grad_at or VECTORS[pair[1]].grad_at or first
            if owner in plan:  # a gradient at a point not measured this step: the pair is NaN
                plan[owner][0].add(pair)
        for column, vectors in ((1, needs.l1), (2, needs.linf)):
            for v in vectors:
                owner = VECTORS[v].grad_at or first
                if owner in plan:
                    plan[owner][column].add(v)
        return [(p, *plan[p]) for p in plan]

    def _measure_at(
        self,
        point: Params | None,
        grad_source: str | None,
        sources: dict[str, Mapping[str, Tensor]],
        dots: set[tuple[str, str]],
        l1: set[str],
        linf: set[str],
        pending: Pending,
    ) -> tuple[Tensor | None, Reduction]:
        """(ℓ(point, z_t) as a device tensor, the reduction of ``sources``); with ``grad_source``,
        ∇ℓ(point, z_t) joins them.

        The gradient is streamed: each tensor is reduced as backward produces it and then dropped, so
        measuring at another point holds one gradient tensor at a time, never a whole gradient.
        """
        streamed = {grad_source} if point is not None and grad_source is not None else set()
        reduction = Reduction(
            set(sources) | streamed, dots, l1, linf, self.workspace, self.evaluator.over_ranks
        )
        loss = None
        if streamed:
            loss = self.evaluator.stream_grad(
                point, pending.batch,
                lambda name, grad: reduction.add(name, {**sources, grad_source: {name: grad}}),
                pending.rng,
            )  # fmt: skip
        else:
            if point is not None:
                loss = self.evaluator.loss(point, pending.batch, pending.rng)
            reduction.add_all(self.names, sources)
        return loss, reduction

    def _check_step(self, data: StepData) -> None:
        if not math.isfinite(data.dot("g", "g")) and math.isfinite(data.loss):
            self.warn("non_finite_grad", f"step {data.step}: the gradient has non-finite entries")
        if data.dot("g", "g") == 0.0:
            self.warn(
                "zero_gradient",
                f"step {data.step}: every gradient entry is 0; if that is unexpected, call end_step after "
                "loss.backward() and before optimizer.zero_grad()",
            )
        measured = ("dx_prev", "dx_prev") in data.dots
        if self.zero_update_undefined and measured and data.dot("dx_prev", "dx_prev") == 0.0:
            self.warn(
                "zero_update", f"step {data.step}: x_t = x_(t-1), so smoothness against x_(t-1) is NaN"
            )


def _vectors(key: str | tuple[str, str]) -> tuple[str, ...]:
    """The vectors a reduction's key names: a pair's two, or a norm's one."""
    return (key,) if isinstance(key, str) else key
