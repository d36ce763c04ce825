"""What a metric is: it declares the evaluations it needs and turns the shared results into numbers.

Two kinds exist.

* :class:`TrajectoryMetric` runs on every measured training step. It never runs a forward pass:
  it declares its :class:`Needs` (a loss or gradient at x_{t−1} or x* on z_t, inner products of
  named vectors), the Probe computes the union once per step, and ``update`` reads :class:`StepData`.
* :class:`PeriodicMetric` runs every ``every`` steps on a fixed evaluation batch and may make its own
  passes through the :class:`~optprobe.evaluation.Evaluator` (curvature is of this kind).

Vectors that trajectory metrics may name in ``Needs.dots``/``l1``/``linf`` (all global over trained
parameters, available per layer too):

==========  ===========================================
``g``       g_t = ∇ℓ(x_t, z_t), the training gradient
``x``       x_t
``dx_prev`` Δ_t = x_t − x_{t−1}
``dx_ref``  x_t − x*
``dg_prev`` g_t − ∇ℓ(x_{t−1}, z_t)
``dg_ref``  g_t − ∇ℓ(x*, z_t)
==========  ===========================================
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from optprobe.evaluation import Batch, Evaluator, Params

VECTORS = ("g", "x", "dx_prev", "dx_ref", "dg_prev", "dg_ref")


@dataclass(frozen=True)
class Needs:
    """The evaluations and reductions a trajectory metric reads."""

    prev_loss: bool = False
    prev_grad: bool = False
    ref_loss: bool = False
    ref_grad: bool = False
    dots: frozenset[tuple[str, str]] = frozenset()
    l1: frozenset[str] = frozenset()
    linf: frozenset[str] = frozenset()

    def __or__(self, other: Needs) -> Needs:
        return Needs(
            self.prev_loss or other.prev_loss,
            self.prev_grad or other.prev_grad,
            self.ref_loss or other.ref_loss,
            self.ref_grad or other.ref_grad,
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
    def uses_prev(self) -> bool:
        return self.prev_loss or self.prev_grad or self._mentions("prev")

    @property
    def uses_ref(self) -> bool:
        return self.ref_loss or self.ref_grad or self._mentions("ref")

    def _mentions(self, suffix: str) -> bool:
        names = {v for pair in self.dots for v in pair} | self.l1 | self.linf
        return any(name.endswith(suffix) for name in names)


@dataclass
class LayerSums:
    """A reduction of one vector pair, per layer (ordered like ``StepData.layers``) and in total."""

    per_layer: list[float]
    total: float


@dataclass
class StepData:
    """Everything the Probe gathered for one measured step; metrics only read it."""

    step: int
    epoch: int
    layers: list[str]
    loss: float
    prev_loss: float = math.nan
    ref_loss: float = math.nan
    scale: float = 1.0
    scale_weight: float = 1.0
    dots: dict[tuple[str, str], LayerSums] = field(default_factory=dict)
    l1: dict[str, LayerSums] = field(default_factory=dict)
    linf: dict[str, LayerSums] = field(default_factory=dict)

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
    """A metric of the training trajectory, updated at each measured step from shared evaluations."""

    needs: Needs = Needs()

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
    """A metric computed every ``every`` steps at x_t on a fixed evaluation batch (e.g. curvature)."""

    every: int = 100

    @abstractmethod
    def compute(self, evaluator: Evaluator, params: Params, batch: Batch, step: int) -> dict[str, float]:
        """Return ``{column: value}`` for the parameters ``params`` (do not modify them)."""

    def due(self, step: int) -> bool:
        return self.every > 0 and step % self.every == 0

    def attach(self, eval_loader: Iterable[Batch] | None, seed: int) -> None:  # noqa: B027 - most ignore F
        """Called once by the Probe with the loader that defines F and F's seed (for metrics of F)."""

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
