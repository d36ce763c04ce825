"""What a metric is: it declares the evaluations it needs and turns the shared results into numbers.

Two kinds exist.

* :class:`TrajectoryMetric` runs on every measured training step. It never runs a forward pass:
  it declares its :class:`Needs` (a loss or gradient at a point such as x_{t−1} or x* on z_t, inner
  products of named vectors), the Probe computes the union once per step, and ``update`` reads
  :class:`StepData`.
* :class:`PeriodicMetric` runs every ``every`` steps on a fixed evaluation batch and may make its own
  passes through the :class:`~optprobe.evaluation.Evaluator` (curvature is of this kind).

The points (``prev`` = x_{t−1}, ``ref`` = x*, ``init`` = x_0, …) and the vectors that ``Needs.dots``,
``l1`` and ``linf`` may name (``g``, ``x``, ``dx_prev`` = Δ_t, ``dg_prev`` = g_t − ∇ℓ(x_{t−1}, z_t), …;
all global over the trained parameters, per layer too) are the tables
:data:`optprobe.reductions.POINTS` and :data:`optprobe.reductions.VECTORS`.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from optprobe.errors import OptprobeError
from optprobe.evaluation import Batch, Evaluator, Params
from optprobe.full_pass import FullPass
from optprobe.reductions import VECTORS, LayerSums, check_points, check_vectors

__all__ = ["LayerSums", "Needs", "PeriodicMetric", "StepData", "TrajectoryMetric"]


@dataclass(frozen=True)
class Needs:
    """The evaluations and reductions a trajectory metric reads.

    losses / grads: points (rows of :data:`~optprobe.reductions.POINTS`) where ℓ(·, z_t) / ∇ℓ(·, z_t) is
    needed; dots: pairs of vectors whose inner product is needed; l1 / linf: vectors whose norm is needed.
    """

    losses: frozenset[str] = frozenset()
    grads: frozenset[str] = frozenset()
    dots: frozenset[tuple[str, str]] = frozenset()
    l1: frozenset[str] = frozenset()
    linf: frozenset[str] = frozenset()

    def __or__(self, other: Needs) -> Needs:
        return Needs(
            self.losses | other.losses,
            self.grads | other.grads,
            self.dots | other.dots,
            self.l1 | other.l1,
            self.linf | other.linf,
        )

    @staticmethod
    def union(needs: Iterable[Needs]) -> Needs:
        total = Needs()
        for n in needs:
            total = total | n
        return total

    @property
    def vectors(self) -> frozenset[str]:
        """Every vector named in ``dots``, ``l1`` and ``linf``."""
        return frozenset(v for pair in self.dots for v in pair) | self.l1 | self.linf

    @property
    def points(self) -> frozenset[str]:
        """Every point read: where a loss or gradient is needed, and what the vectors are built from."""
        return self.losses | self.grads | {p for v in self.vectors for p in VECTORS[v].points}

    def check(self, owner: str) -> None:
        """Raise an :class:`OptprobeError` (listing what exists) for an unknown point or vector, or a pair
        needing gradients at two points (each pass streams the gradient at one point)."""
        check_vectors(self.vectors, owner)
        check_points(self.losses | self.grads, owner)
        for a, b in self.dots:
            at = {VECTORS[a].grad_at, VECTORS[b].grad_at} - {None}
            if len(at) > 1:
                raise OptprobeError(f"{owner} needs ⟨{a}, {b}⟩, gradients at two points: not computable")


@dataclass
class StepData:
    """Everything the Probe gathered for one measured step; metrics only read it."""

    step: int
    epoch: int
    layers: list[str]
    loss: float
    losses: dict[str, float] = field(default_factory=dict)  # ℓ(point, z_t) for the points measured
    scale: float = 1.0
    scale_weight: float = 1.0
    dots: dict[tuple[str, str], LayerSums] = field(default_factory=dict)
    l1: dict[str, LayerSums] = field(default_factory=dict)
    linf: dict[str, LayerSums] = field(default_factory=dict)

    def loss_at(self, point: str) -> float:
        """ℓ(point, z_t); NaN when the step could not provide it (no x_{t−1} at the first step)."""
        return self.losses.get(point, math.nan)

    def dot(self, a: str, b: str) -> float:
        """⟨a, b⟩ over all trained parameters; NaN when the step could not provide it."""
        sums = self.dots.get((a, b))
        return math.nan if sums is None else sums.total

    def layer_dots(self, a: str, b: str) -> list[float]:
        sums = self.dots.get((a, b))
        return [math.nan] * len(self.layers) if sums is None else sums.per_layer

    def norm(self, a: str) -> float:
        return _sqrt(self.dot(a, a))

    def layer_norms(self, a: str) -> list[float]:
        return [_sqrt(v) for v in self.layer_dots(a, a)]


def _sqrt(v: float) -> float:
    return math.sqrt(max(v, 0.0)) if math.isfinite(v) else math.nan


class TrajectoryMetric(ABC):
    """A metric of the training trajectory, updated at each measured step from shared evaluations.

    ``family`` and ``columns`` name what it writes for trackers (``optprobe/<family>/<column>``): each
    column is a stem of ``columns``, a stem and a suffix (``inst_gap`` → ``inst_gap_prev``) or a stem and a
    layer (``inst_smooth_prev/fc1``); columns not declared go under ``other``. ``emas`` names the stems
    whose columns end in an EMA's β (``exp_gap`` → ``exp_gap_prev_0.99``), tracked by β's index instead.
    """

    needs: Needs = Needs()
    family: str = "other"
    columns: tuple[str, ...] = ()
    emas: tuple[str, ...] = ()

    @abstractmethod
    def update(self, data: StepData) -> dict[str, float]:
        """Consume one step; return ``{column: value}`` (NaN where undefined)."""

    def reset_window(self) -> None:  # noqa: B027 - most metrics keep no windowed state
        """Start a new window (an epoch, when windows reset per epoch)."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:  # noqa: B027 - stateless default
        """Restore what :meth:`state_dict` returned."""


class PeriodicMetric(ABC):
    """A metric computed every ``every`` steps at x_t on a fixed evaluation batch (e.g. curvature);
    ``family`` and ``columns`` as for :class:`TrajectoryMetric`."""

    every: int = 100
    family: str = "other"
    columns: tuple[str, ...] = ()

    @abstractmethod
    def compute(self, evaluator: Evaluator, params: Params, batch: Batch, step: int) -> dict[str, float]:
        """Return ``{column: value}`` for the parameters ``params`` (do not modify them)."""

    def due(self, step: int) -> bool:
        return self.every > 0 and step % self.every == 0

    def attach(self, eval_loader: Iterable[Batch] | None, seed: int) -> None:  # noqa: B027 - most ignore F
        """Called once by the Probe with the loader that defines F and F's seed (for metrics of F)."""

    def measures_f(self) -> bool:
        """Whether the metric needs the Probe's ``eval_loader`` (it measures F, not ℓ on a batch)."""
        return False

    def reads_full_grad(self) -> bool:
        """Whether the metric reads ∇F(x_t) over the Probe's ``eval_loader`` and seed: the Probe then
        calls :meth:`compute_shared` with the pass it shares with the step's other consumers of ∇F. A
        metric that says True must take ∇F from that pass (override :meth:`compute_shared`): the pass
        counts its consumers and lets go of ∇F after the last."""
        return False

    def compute_shared(
        self, evaluator: Evaluator, params: Params, batch: Batch, step: int, full: FullPass
    ) -> dict[str, float]:
        """:meth:`compute`, taking F and ∇F at ``params`` from ``full`` (metrics that read ∇F override it)."""
        return self.compute(evaluator, params, batch, step)

    def state_dict(self) -> dict[str, Any]:
        """What the metric must remember across a checkpoint (most remember nothing)."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:  # noqa: B027 - stateless default
        """Restore what :meth:`state_dict` returned."""


def safe_ratio(num: float, den: float) -> float:
    """num / den, or NaN where the quotient is undefined (zero or non-finite denominator)."""
    if den == 0.0 or not math.isfinite(den) or not math.isfinite(num):
        return math.nan
    return num / den


def as_float(x: Tensor | float) -> float:
    return float(x.item()) if isinstance(x, Tensor) else float(x)
