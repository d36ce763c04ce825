"""Generalised Gauss–Newton products G v = Jᵀ (∇²_f ℓ) J v, J = ∂f/∂x the Jacobian of the model's outputs.

The loss must be written through the outputs, ℓ(x, z) = output_loss(model_fn(model, z), z), as a
:class:`SplitLoss`; it is itself a ``loss_fn(model, batch)``, so the same object defines the Hessian
(H = G + R, with R = Σ_j ∂ℓ/∂f_j ∇²f_j the residual) and the Gauss–Newton matrix of the same ℓ.
G is positive semidefinite when ``output_loss`` is convex in the outputs (cross-entropy on logits, MSE).

Each product (torch.func): J v by forward mode (``jvp`` of the model), ∇²_f ℓ (J v) by forward-over-reverse
in output space, and Jᵀ(·) through the model's reverse graph, built once per operator (``vjp``) and held
until the operator is dropped. Every forward replays the same random numbers (dropout masks), so J and Jᵀ
belong to one function. A stack of vectors goes through ``vmap``; a model ``vmap`` cannot trace (BatchNorm
in train mode) is multiplied one vector at a time.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from optprobe.curvature.hvp import ParamLayout, check_one_dtype
from optprobe.curvature.operator import MatmulMixin
from optprobe.distributed import all_reduce_, is_distributed
from optprobe.errors import OptprobeError
from optprobe.evaluation import Batch, Evaluator, RngState


@dataclass(frozen=True)
class SplitLoss:
    """ℓ(model, z) = output_loss(model_fn(model, z), z): a ``loss_fn`` whose outputs the GGN can see.

    ``model_fn(model, batch) -> outputs`` (a tensor, e.g. logits) and ``output_loss(outputs, batch) ->
    scalar`` (the batch-mean loss); e.g. ``SplitLoss(lambda m, b: m(b[0]), lambda f, b: F.cross_entropy(f,
    b[1]))``.
    """

    model_fn: Callable[[nn.Module, Batch], Any]
    output_loss: Callable[[Any, Batch], Tensor]

    def __call__(self, model: nn.Module, batch: Batch) -> Tensor:
        return self.output_loss(self.model_fn(model, batch), batch)


def split_of(evaluator: Evaluator, split: SplitLoss | None) -> SplitLoss:
    """``split``, or the evaluator's own loss when it is a :class:`SplitLoss`; else an error saying why."""
    if split is not None:
        return split
    if isinstance(evaluator.loss_fn, SplitLoss):
        return evaluator.loss_fn
    raise OptprobeError(
        "the Gauss-Newton matrix needs the loss written through the model's outputs: pass "
        "SplitLoss(model_fn, output_loss) as the loss_fn (it is one), or as split="
    )


class GGNOperator(MatmulMixin):
    """v ↦ G v = Jᵀ ∇²_f ℓ J v at a fixed point x and batch z; one vector (d,) or a stack (k, d).

    ``across_ranks``: under a process group of more than one rank, each product is the rank mean (the GGN
    of the mean of the ranks' losses), as for :class:`~optprobe.curvature.hvp.HessianOperator`.
    """

    def __init__(
        self,
        evaluator: Evaluator,
        params: Mapping[str, Tensor],
        batch: Batch,
        split: SplitLoss | None = None,
        chunk_size: int | None = 32,
        across_ranks: bool = True,
    ) -> None:
        check_one_dtype(params)
        self.split = split_of(evaluator, split)
        self.evaluator = evaluator
        self.params = {name: p.detach() for name, p in params.items()}
        self.batch = batch
        self.layout = ParamLayout.of(self.params)
        self.chunk_size = chunk_size
        self.n_hvps = 0
        first = next(iter(self.params.values()))
        self.dtype, self.device = first.dtype, first.device
        self._rng = RngState.capture(self.device)
        self._reverse: tuple[Any, Callable[[Any], tuple[dict[str, Tensor]]]] | None = None
        self.across_ranks = across_ranks and not evaluator.sharded and is_distributed()

    @property
    def dim(self) -> int:
        return self.layout.dim

    def __call__(self, v: Tensor, within: Sequence[str] | None = None) -> Tensor:
        """G v for v of shape (d,) or G Vᵀ row-wise for V of shape (k, d) (``within`` is not used)."""
        stack = v.reshape(-1, self.dim).to(self.dtype)
        self.n_hvps += stack.shape[0]
        if self._reverse is None:
            with self._session():
                self._reverse = torch.func.vjp(self._outputs, self.params)
        if stack.shape[0] == 1:
            products = self._product(stack[0]).unsqueeze(0)
        else:
            try:
                batched = torch.func.vmap(self._product, chunk_size=self.chunk_size, randomness="same")
                products = batched(stack)
            except Exception:  # noqa: BLE001 - torch.func raises assorted types for models it cannot batch
                products = torch.stack([self._product(row) for row in stack])
        if self.across_ranks:
            all_reduce_([products], mean=True)
        return products.reshape(v.shape)

    def _outputs(self, params: Mapping[str, Tensor]) -> Any:
        return self.evaluator.outputs_at(self.split.model_fn, params, self.batch)

    @contextlib.contextmanager
    def _session(self) -> Iterator[None]:
        # the forward replays the operator's random numbers (dropout) and uses the math attention kernel
        with self.evaluator.replay(self._rng), sdpa_kernel(SDPBackend.MATH):
            yield

    def _product(self, v: Tensor) -> Tensor:
        """Jᵀ ∇²_f ℓ J v for one flat v."""
        assert self._reverse is not None
        outputs, pullback = self._reverse
        with self._session():
            _, jv = torch.func.jvp(self._outputs, (self.params,), (self.layout.unflatten(v),))
            grad_out = torch.func.grad(lambda f: self.split.output_loss(f, self.batch))
            _, hjv = torch.func.jvp(grad_out, (outputs,), (jv,))
        (gv,) = pullback(hjv)
        return self.layout.flatten(gv)
