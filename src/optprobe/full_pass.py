"""One pass over F shared by a measured step's consumers: F(x_t) and ∇F(x_t) computed once, not per metric.

The full-batch metrics and a periodic metric of ∇F (``full_smoothness``) can both measure x_t over the
Probe's evaluation loader under F's seed in the same step: the Probe hands them one :class:`FullPass`,
which makes the pass (:meth:`~optprobe.evaluation.Evaluator.full_loss_and_grad`) at the first request and
serves the same tensors to the next. It lets go of them after its last announced consumer, so ∇F
never outlives the step. A request for other tensors, another loader or seed, another train/eval mode, or
after the point changed in place (a tensor's ``_version``) gets a pass of its own: never a stale value.
"""

from __future__ import annotations

from collections.abc import Iterable

from torch import Tensor

from optprobe.evaluation import Batch, Evaluator, Params


class FullPass:
    """(F(x), ∇F(x)) over ``loader`` under ``seed`` at the point ``params``, computed at most once for
    ``uses`` consumers; read-only tensors (a consumer that keeps ∇F clones it)."""

    def __init__(
        self, evaluator: Evaluator, params: Params, loader: Iterable[Batch], seed: int, uses: int = 1
    ) -> None:
        self.evaluator, self.params, self.loader, self.seed = evaluator, params, loader, seed
        self._tensors = tuple(params.values())
        self._uses = uses
        self._value: tuple[Tensor, Params] | None = None
        self._state: tuple[tuple[int, ...], tuple[bool, ...]] | None = None  # x's versions, the modes

    def loss_and_grad(self, params: Params, loader: Iterable[Batch], seed: int) -> tuple[Tensor, Params]:
        """(F(params), ∇F(params)) over ``loader`` under ``seed``: the shared pass when they are this pass's
        point (the same tensors, unchanged since), loader and seed, in the same modes; else a new pass."""
        if not self._same_request(params, loader, seed):
            return self._compute(params, loader, seed)
        state = self._current_state()
        if self._value is None or state != self._state:
            self._value, self._state = self._compute(params, loader, seed), state
        value = self._value
        self._uses -= 1
        if self._uses <= 0:  # the last announced consumer holds it now: nothing kept past the step
            self._value = self._state = None
        return value

    def _same_request(self, params: Params, loader: Iterable[Batch], seed: int) -> bool:
        same_point = len(params) == len(self._tensors) and all(
            a is b for a, b in zip(params.values(), self._tensors, strict=False)
        )
        return same_point and loader is self.loader and seed == self.seed

    def _current_state(self) -> tuple[tuple[int, ...], tuple[bool, ...]]:
        """The point's in-place version counters and the model's train/eval flags, as they are now."""
        return (
            tuple(t._version for t in self._tensors),
            tuple(m.training for m in self.evaluator.model.modules()),
        )

    def _compute(self, params: Params, loader: Iterable[Batch], seed: int) -> tuple[Tensor, Params]:
        loss, grad, _ = self.evaluator.full_loss_and_grad(params, loader, seed)
        assert grad is not None
        return loss, grad
