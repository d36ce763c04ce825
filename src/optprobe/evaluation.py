"""Loss and gradient of the user's objective at any parameter point, on any batch.

Every extra pass optprobe makes goes through :class:`Evaluator`. It evaluates
``loss_fn(model, batch)`` with the model's trained parameters replaced by a given point
(``torch.func.functional_call``), so the model is never copied, and it keeps three promises:

* buffers (BatchNorm running statistics, counters) are never changed: each pass sees clones (of the
  model's own, or of the point's own inside :meth:`Evaluator.buffers_of`);
* the training RNG stream is never advanced: passes run inside ``torch.random.fork_rng``;
* given an :class:`RngState` captured before the training forward, the pass replays the same
  random numbers, so dropout masks (and any randomness inside ``loss_fn``) match the training step.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from optprobe.distributed import all_reduce_, is_distributed
from optprobe.errors import OptprobeError

Batch = Any
LossFn = Callable[[nn.Module, Batch], Tensor]
Params = dict[str, Tensor]
Consumer = Callable[[str, Tensor], None]


def trained_parameters(model: nn.Module) -> Params:
    """The parameters the optimizer trains: every ``named_parameters()`` entry with ``requires_grad``."""
    params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    if not params:
        raise OptprobeError(
            "the model has no parameter with requires_grad=True, so there is nothing to measure; "
            "unfreeze at least one parameter before attaching a Probe"
        )
    return params


def detached_copy(params: Mapping[str, Tensor]) -> Params:
    """A detached clone of each tensor: a snapshot that later in-place optimizer steps cannot change."""
    return {name: p.detach().clone() for name, p in params.items()}


def batch_size(batch: Batch) -> int:
    """Number of examples in a batch: the leading dimension of its first tensor."""
    for leaf in _tensor_leaves(batch):
        return int(leaf.shape[0]) if leaf.dim() > 0 else 1
    raise OptprobeError(
        f"cannot find a tensor in the batch (got {type(batch).__name__}); batches must be tensors or "
        "tuples/lists/dicts of tensors"
    )


def _tensor_leaves(batch: Batch) -> Iterator[Tensor]:
    if isinstance(batch, Tensor):
        yield batch
    elif isinstance(batch, Mapping):
        for value in batch.values():
            yield from _tensor_leaves(value)
    elif isinstance(batch, (list, tuple)):
        for value in batch:
            yield from _tensor_leaves(value)


def batch_devices(batch: Batch) -> set[torch.device]:
    """The devices the batch's tensors are on (empty when it holds no tensor)."""
    return {leaf.device for leaf in _tensor_leaves(batch)}


@dataclass(frozen=True)
class RngState:
    """The global RNG state (CPU and, when used, one CUDA device) at a moment of training."""

    cpu: Tensor
    cuda: Tensor | None = None
    cuda_device: int | None = None

    @classmethod
    def capture(cls, device: torch.device | None = None) -> RngState:
        """Snapshot the RNG that a forward pass on ``device`` draws from."""
        if device is not None and device.type == "cuda":
            index = device.index if device.index is not None else torch.cuda.current_device()
            return cls(torch.get_rng_state(), torch.cuda.get_rng_state(index), index)
        return cls(torch.get_rng_state())

    def restore(self) -> None:
        """Make the global RNG produce, from now on, what it produced after :meth:`capture`."""
        torch.set_rng_state(self.cpu)
        if self.cuda is not None:
            torch.cuda.set_rng_state(self.cuda, self.cuda_device)

    def devices(self) -> list[int]:
        return [] if self.cuda_device is None else [self.cuda_device]


class _LossModule(nn.Module):
    """Wraps ``loss_fn(model, batch)`` as a module so functional_call can swap the model's tensors."""

    def __init__(self, model: nn.Module, loss_fn: LossFn) -> None:
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def forward(self, batch: Batch) -> Tensor:
        return self.loss_fn(self.model, batch)


class Evaluator:
    """Evaluates ℓ(x, z) and ∇ℓ(x, z) at a parameter point x without touching the model's state."""

    sharded = False  # points and gradients are whole tensors, replicated on every rank

    def __init__(self, model: nn.Module, loss_fn: LossFn) -> None:
        self.model = model
        self.loss_fn = loss_fn
        self._module = _LossModule(model, loss_fn)
        self._buffers: Mapping[str, Tensor] = {}  # the point's own buffers, by the model's buffer names

    def over_ranks(self, partial: Tensor, max_from: int | None = None) -> Tensor:
        """Totals of per-rank partial reductions (columns from ``max_from`` on are maxima).

        Every rank holds whole tensors here, so its partial results already are the totals.
        """
        return partial

    def _tensors(self, params: Mapping[str, Tensor]) -> dict[str, Tensor]:
        tensors = {f"model.{name}": p for name, p in params.items()}
        tensors.update(
            {f"model.{name}": self._buffers.get(name, b).clone() for name, b in self.model.named_buffers()}
        )
        return tensors

    @contextlib.contextmanager
    def buffers_of(self, buffers: Mapping[str, Tensor] | None) -> Iterator[None]:
        """Passes inside the block use ``buffers`` (model buffer name → tensor) in place of the model's own.

        A point other than x_t brings its own buffers this way (x*: the reference's running statistics);
        names not in ``buffers`` keep the model's. Neither the model nor ``buffers`` is changed.
        """
        saved, self._buffers = self._buffers, dict(buffers or {})
        try:
            yield
        finally:
            self._buffers = saved

    @contextlib.contextmanager
    def replay(self, rng: RngState | None) -> Iterator[None]:
        """Run a pass with the training RNG forked and, when given, rewound to ``rng``.

        The CUDA generators of the model's devices are forked too, so a pass never advances the random
        numbers training draws next, whether or not it replays a state.
        """
        model_devices = cuda_devices(dict(self.model.named_parameters()))
        devices = sorted(set(model_devices) | set(rng.devices() if rng is not None else []))
        with torch.random.fork_rng(devices=devices):
            if rng is not None:
                rng.restore()
            yield

    def loss_at(self, params: Mapping[str, Tensor], batch: Batch) -> Tensor:
        """ℓ(params, batch) as a differentiable function of ``params`` (buffers cloned, RNG not forked).

        Use this inside torch.func transforms or your own ``replay`` block; most callers want
        :meth:`loss` or :meth:`loss_and_grad`.
        """
        tensors = self._tensors(params)
        return scalar_loss(torch.func.functional_call(self._module, tensors, (batch,), strict=False))

    def outputs_at(
        self, fn: Callable[[nn.Module, Batch], Any], params: Mapping[str, Tensor], batch: Batch
    ) -> Any:
        """fn(model, batch) with the trained parameters replaced by ``params``, like :meth:`loss_at` (the
        model's outputs for the Gauss–Newton matrix, when ``fn`` returns them)."""
        module = _LossModule(self.model, fn)
        return torch.func.functional_call(module, self._tensors(params), (batch,), strict=False)

    def loss(self, params: Mapping[str, Tensor], batch: Batch, rng: RngState | None = None) -> Tensor:
        """ℓ(params, batch), detached, with no graph built (averaged over ranks under DDP)."""
        with self.replay(rng), torch.no_grad():
            loss = self.loss_at(params, batch).detach()
        all_reduce_([loss], mean=True)
        return loss

    def loss_and_grad(
        self, params: Mapping[str, Tensor], batch: Batch, rng: RngState | None = None
    ) -> tuple[Tensor, Params]:
        """(ℓ(params, batch), ∇ℓ(params, batch)) (rank means under DDP); ``.grad`` is never written."""
        grads: Params = {}
        loss = self.stream_grad(params, batch, grads.__setitem__, rng)
        return loss, {name: grads[name] for name in params}

    def stream_grad(
        self,
        params: Mapping[str, Tensor],
        batch: Batch,
        consume: Consumer,
        rng: RngState | None = None,
        across_ranks: bool = True,
    ) -> Tensor:
        """ℓ(params, batch); each ∂ℓ/∂params[name] goes to ``consume(name, grad)`` as backward makes it.

        A consumer that reduces and drops each tensor keeps at most one gradient tensor alive, never
        the whole gradient. Gradients are laid out like their parameters (accumulated into ``.grad`` of
        a fresh leaf, as training does); a parameter the loss does not use gets zeros. With
        ``across_ranks`` each tensor and the loss are averaged over DDP ranks first; the tensors then
        enter their all-reduces in one fixed order on every rank (reverse registration order, the usual
        backward order), so ranks whose losses use different parameters still pair the same tensors. A
        gradient that arrives before its turn is held until then, so a rank that leaves a parameter
        unused (data-dependent routing) holds the gradients backward makes after that parameter's turn.
        """
        leaves = {name: p.detach().requires_grad_(True) for name, p in params.items()}

        def backward() -> Tensor:
            loss = differentiable(self.loss_at(leaves, batch))
            loss.backward(inputs=list(leaves.values()))
            return loss

        collective = across_ranks and is_distributed()
        with self.replay(rng):
            loss = stream_leaf_grads(
                leaves,
                consume,
                backward,
                _average_over_ranks_in_place if collective else None,
                order=list(reversed(leaves)) if collective else None,
            )
        if across_ranks:
            all_reduce_([loss], mean=True)
        return loss

    def full_loss_and_grad(
        self, params: Mapping[str, Tensor], loader: Iterable[Batch], seed: int = 0, with_grad: bool = True
    ) -> tuple[Tensor, Params | None, int]:
        """(F(x), ∇F(x), n): the example-weighted mean loss over ``loader``, gradient accumulated per chunk.

        Memory stays at one gradient plus one chunk's activations. Randomness inside the loss
        (dropout) is F's fixed mask stream: chunk c (counted from 0 on this rank) draws from the global
        RNG seeded with ``chunk_seed(seed, c)``, at every point and with or without the gradient, so F
        is one function of x. Under DDP each rank reads its own shard of the data and the totals are
        summed over ranks (a rank whose shard is empty adds zeros).
        """
        total_loss: Tensor | None = None
        total_grad: Params | None = None
        count = 0
        with torch.random.fork_rng(devices=cuda_devices(params)):
            for index, chunk in enumerate(self._chunks(loader)):
                torch.manual_seed(chunk_seed(seed, index))
                n = batch_size(chunk)
                grad: Params = {}
                loss = self._chunk_pass(params, chunk, n, grad.__setitem__ if with_grad else None)
                if with_grad:  # summed in at least float32: a bfloat16 sum drifts by ~1e-2 over 256 chunks
                    total_grad = (
                        {k: g.to(_sum_dtype(g.dtype)) for k, g in grad.items()}
                        if total_grad is None
                        else {k: total_grad[k].add_(grad[k]) for k in grad}
                    )
                total_loss = loss * n if total_loss is None else total_loss + loss * n
                count += n
        device = next(iter(params.values())).device
        zero = torch.zeros((), dtype=torch.float64, device=device)
        totals = [zero if total_loss is None else total_loss, zero + count]
        if with_grad and total_grad is None and not self.sharded and is_distributed():
            # this rank's loader yielded nothing: zero sums, so that every rank enters the same all-reduce
            total_grad = {k: torch.zeros_like(p, dtype=_sum_dtype(p.dtype)) for k, p in params.items()}
        # sharded chunk passes reduce-scatter, so their gradients already are sums over ranks; the sums
        # go in the parameters' order, the same on every rank (backward's order can differ between ranks)
        rank_grads = [] if self.sharded or total_grad is None else [total_grad[k] for k in params]
        all_reduce_([*totals, *rank_grads], mean=False)
        total_loss, count = totals[0], int(totals[1].item())
        if count == 0:
            raise OptprobeError(
                "the evaluation loader yielded no batch; pass a non-empty DataLoader as eval_loader "
                "(check its length and drop_last)"
            )
        grad_mean = None if total_grad is None else {k: total_grad[k].div_(count) for k in params}
        return total_loss / count, grad_mean, count

    def _chunks(self, loader: Iterable[Batch]) -> Iterator[Batch]:
        """The evaluation chunks of this rank."""
        return iter(loader)

    def _chunk_pass(
        self, params: Mapping[str, Tensor], chunk: Batch, weight: int, consume: Consumer | None
    ) -> Tensor:
        """ℓ(params, chunk) on this rank; with ``consume``, each tensor of weight·∇ℓ(params, chunk) to it."""
        if consume is None:
            with torch.no_grad():
                return self.loss_at(params, chunk).detach()

        def weighted(name: str, grad: Tensor) -> None:
            consume(name, grad.mul_(weight))

        return self.stream_grad(params, chunk, weighted, across_ranks=False)


def chunk_seed(seed: int, index: int) -> int:
    """The seed of chunk ``index`` of a full-batch pass under ``seed``: (seed·1000003 + index) mod 2⁶³."""
    return (seed * 1_000_003 + index) % 2**63


def scalar_loss(loss: object) -> Tensor:
    """``loss`` as a 0-d tensor, or an error saying what loss_fn must return."""
    if not isinstance(loss, Tensor) or loss.numel() != 1:
        raise OptprobeError(
            "loss_fn(model, batch) must return a scalar tensor (the mean loss over the batch); "
            f"got {type(loss).__name__} with shape {getattr(loss, 'shape', None)}"
        )
    return loss.reshape(())


def differentiable(loss: Tensor) -> Tensor:
    """``loss``, or an error saying why the Probe cannot take its gradient."""
    if not loss.requires_grad:
        raise OptprobeError(
            "loss_fn(model, batch) returned a loss that does not depend on the parameters through autograd "
            "(a .detach(), .item() or torch.no_grad() inside it?); return the loss you call backward() on"
        )
    return loss


def stream_leaf_grads(
    leaves: Mapping[str, Tensor],
    consume: Consumer,
    backward: Callable[[], Tensor],
    prepare: Callable[[Tensor], Tensor] | None = None,
    order: Sequence[str] | None = None,
) -> Tensor:
    """Run ``backward()`` (it returns the loss); each leaf's ``.grad`` goes to ``consume`` once accumulated.

    The gradient is taken off the leaf (``.grad`` is left None), handed over as ``prepare(grad)`` (a
    rank mean, a local shard) or as is; a leaf the loss does not use gets zeros. Without ``order``
    gradients are handed over as backward makes them. With ``order`` (every leaf name once) they are
    handed over in that order, whatever order backward makes them in: a gradient that arrives early is
    held until its turn, and a leaf that has not arrived when backward ends gets zeros at its turn. A
    ``prepare`` that is a collective needs this, so that every rank pairs the same tensors.
    """
    if order is not None and sorted(order) != sorted(leaves):
        raise ValueError("order must name every leaf exactly once")
    pending = dict.fromkeys(leaves if order is None else order)  # not yet handed over, in hand-over order
    held: dict[str, Tensor] = {}  # with ``order``: gradients made before their turn (the first pending)

    def hand_over(name: str, grad: Tensor) -> None:
        del pending[name]
        consume(name, grad if prepare is None else prepare(grad))

    def arrived(name: str, leaf: Tensor) -> None:
        grad, leaf.grad = leaf.grad, None
        if order is None:
            hand_over(name, grad)
            return
        held[name] = grad
        while pending and (turn := next(iter(pending))) in held:
            hand_over(turn, held.pop(turn))

    hooks = [
        leaf.register_post_accumulate_grad_hook(lambda leaf, name=name: arrived(name, leaf))
        for name, leaf in leaves.items()
    ]
    try:
        with torch.enable_grad():
            loss = backward()
    finally:
        for hook in hooks:
            hook.remove()
    for name in list(pending):  # what is left, in order: held gradients, zeros where the loss does not reach
        hand_over(name, held.pop(name) if name in held else torch.zeros_like(leaves[name]))
    return loss.detach()


def _sum_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype gradient sums are kept in: at least float32."""
    return torch.promote_types(dtype, torch.float32)


def _average_over_ranks_in_place(grad: Tensor) -> Tensor:
    """grad ← its mean over data-parallel ranks, in place (a gradient bucket of the streamed backward)."""
    all_reduce_([grad], mean=True)
    return grad


def cuda_devices(params: Mapping[str, Tensor]) -> list[int]:
    """The CUDA device indices ``params`` live on: the generators a ``torch.random.fork_rng`` must fork."""
    return sorted({p.device.index or 0 for p in params.values() if p.device.type == "cuda"})
