"""Sharded-parameter support (FSDP2, ``fully_shard``): local shards, partial sums, passes through the model.

Under ``fully_shard`` every trained parameter is a DTensor sharded over all ranks, each element held
by exactly one rank. The probe keeps x_t, g_t, x_{t−1} and x* as local shards (``DTensor.to_local``)
and reduces them where they lie: ⟨a, b⟩ = Σ_r ⟨a_r, b_r⟩, ‖a‖₁ = Σ_r ‖a_r‖₁, ‖a‖∞ = max_r ‖a_r‖∞, the
per-rank partial results for one point (x_{t−1} or x*) gathered in one collective.

Passes at another point (the loss and gradient at x_{t−1} or x*, full-batch sums) need whole
parameters. They run through the model itself: the point's local shards are copied into the live
sharded parameters, FSDP all-gathers them in forward and reduce-scatters the gradient (the rank mean,
as DDP averages), and afterwards the parameters, their ``.grad`` (g_t) and the buffers are restored
exactly, so training is bit-identical with and without the probe. This was chosen over all-gathering
into whole tensors for ``torch.func.functional_call``: FSDP's forward hooks install their own unsharded
parameters over any swapped-in tensor, and the copy costs one local shard, not a whole parameter set.
The probe then holds up to three local shards: x_{t−1}, a copy of x_t for the reductions, and x_t set
aside while the live shards hold another point.

Limits: the probe's passes run the model's forward and backward hooks (the user's too); of the periodic
(curvature) metrics only Sharpness and HessianTrace on the periodic batch run, with Hessian-vector products
by differences of gradients (:mod:`optprobe.curvature.sharded`); the others need torch.func over whole
parameters and are refused; parameters must be sharded
over a one-dimensional mesh of all ranks (no HSDP, no tensor parallelism); every rank's evaluation
loader must yield the same number of batches (each batch is a collective).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.distributed.fsdp import FSDPModule
from torch.distributed.tensor import DTensor, Shard, distribute_tensor

from optprobe.distributed import all_reduce_
from optprobe.errors import OptprobeError
from optprobe.evaluation import (
    Batch,
    Consumer,
    Evaluator,
    LossFn,
    RngState,
    differentiable,
    scalar_loss,
    stream_leaf_grads,
    trained_parameters,
)


def local(tensor: Tensor) -> Tensor:
    """This rank's shard of a DTensor; any other tensor as it is."""
    return tensor.to_local() if isinstance(tensor, DTensor) else tensor


def shard_like(whole: Tensor, param: Tensor) -> Tensor:
    """This rank's shard of ``whole``, sharded as ``param`` is (``whole`` itself for a plain ``param``)."""
    if not isinstance(param, DTensor):
        return whole
    return distribute_tensor(whole, param.device_mesh, param.placements, src_data_rank=None).to_local()


def evaluator_for(model: nn.Module, loss_fn: LossFn) -> Evaluator:
    """A :class:`ShardedEvaluator` for a model with DTensor parameters, else an :class:`Evaluator`."""
    if any(isinstance(p, DTensor) for p in trained_parameters(model).values()):
        return ShardedEvaluator(model, loss_fn)
    return Evaluator(model, loss_fn)


def sum_and_max_over_ranks(partial: Tensor, max_from: int | None = None) -> Tensor:
    """Columns before ``max_from`` summed over ranks, the rest their maximum over ranks: one all-gather."""
    gathered = [torch.empty_like(partial) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, partial.contiguous())
    stacked = torch.stack(gathered)
    if max_from is None:
        return stacked.sum(0)
    return torch.cat([stacked[..., :max_from].sum(0), stacked[..., max_from:].amax(0)], dim=-1)


class ShardedEvaluator(Evaluator):
    """ℓ(x, z) and ∇ℓ(x, z) of a ``fully_shard``-ed model, with x and ∇ℓ given as this rank's local shards."""

    sharded = True

    def __init__(self, model: nn.Module, loss_fn: LossFn) -> None:
        super().__init__(model, loss_fn)
        self.params = trained_parameters(model)
        _check_layout(self.params)
        self._device = next(iter(self.params.values())).device

    def over_ranks(self, partial: Tensor, max_from: int | None = None) -> Tensor:
        return sum_and_max_over_ranks(partial, max_from)

    def loss_at(self, params: Mapping[str, Tensor], batch: Batch) -> Tensor:
        raise OptprobeError(
            "torch.func passes (curvature metrics) need whole parameters and are not supported under "
            "fully_shard; measure curvature on an unsharded copy of the model"
        )

    def loss(self, params: Mapping[str, Tensor], batch: Batch, rng: RngState | None = None) -> Tensor:
        """ℓ(params, batch) averaged over ranks, by a forward of the model at ``params`` (local shards)."""
        with self._at(params), self.replay(rng), torch.no_grad():
            loss = scalar_loss(self.loss_fn(self.model, batch)).detach()
        all_reduce_([loss], mean=True)
        return loss

    def stream_grad(
        self,
        params: Mapping[str, Tensor],
        batch: Batch,
        consume: Consumer,
        rng: RngState | None = None,
        across_ranks: bool = True,
    ) -> Tensor:
        """ℓ(params, batch); the local shard of each ∂ℓ/∂params[name], averaged over ranks, to ``consume``.

        FSDP's reduce-scatter always averages the gradient over ranks; ``across_ranks`` averages the loss.
        """
        with self._at(params), self.replay(rng):
            loss = self._grad_pass(batch, 1.0, consume)
        if across_ranks:
            all_reduce_([loss], mean=True)
        return loss

    def _chunks(self, loader: Iterable[Batch]) -> Iterator[Batch]:
        """This rank's chunks while every rank has one; an error where the ranks' loaders differ in length."""
        chunks = iter(loader)
        world = dist.get_world_size()
        while True:
            chunk = next(chunks, None)
            have = torch.tensor(float(chunk is not None), dtype=torch.float64, device=self._device)
            all_reduce_([have], mean=False)  # the number of ranks with a chunk
            if have.item() == 0:
                return
            if have.item() < world:
                raise OptprobeError(
                    "under fully_shard every rank's eval_loader must yield the same number of batches (each "
                    "batch is a collective pass); use a DistributedSampler, with drop_last if needed"
                )
            yield chunk

    def _chunk_pass(
        self, params: Mapping[str, Tensor], chunk: Batch, weight: int, consume: Consumer | None
    ) -> Tensor:
        """ℓ(params, chunk) on this rank; with ``consume``, the local shards of Σ_r weight_r·∇ℓ_r.

        The reduce-scatter averages over ranks, so the loss is scaled by weight × world size first.
        """
        with self._at(params):
            if consume is None:
                with torch.no_grad():
                    return scalar_loss(self.loss_fn(self.model, chunk)).detach()
            return self._grad_pass(chunk, weight * dist.get_world_size(), consume)

    def _grad_pass(self, batch: Batch, scale: float, consume: Consumer) -> Tensor:
        """ℓ(loaded point, batch); the local shards of the rank mean of ∇(scale·ℓ) go to ``consume``."""

        def backward() -> Tensor:
            loss = differentiable(scalar_loss(self.loss_fn(self.model, batch)))
            (loss * scale).backward()
            return loss

        return stream_leaf_grads(self.params, consume, backward, local)

    @contextlib.contextmanager
    def _at(self, point: Mapping[str, Tensor]) -> Iterator[None]:
        """Within the block the model computes at ``point`` (and :meth:`buffers_of`'s buffers), with no
        ``.grad``; everything restored after.

        FSDP modules are resharded on entry and exit: an unsharded module would skip the all-gather and
        compute at stale parameters (a forward without backward leaves the root unsharded).
        """
        live = {name: local(p.detach()) for name, p in self.params.items()}
        saved = {name: t.clone() for name, t in live.items() if not _same_memory(t, point[name])}
        grads = {name: p.grad for name, p in self.params.items()}
        buffers = [(b, b.clone()) for b in self.model.buffers()]
        self._reshard()
        with torch.no_grad():
            for name in saved:
                live[name].copy_(point[name])
            for name, buffer in self.model.named_buffers():  # the point's own buffers (x*'s), if it has any
                if name in self._buffers:
                    buffer.copy_(self._buffers[name])
        for p in self.params.values():
            p.grad = None
        try:
            yield
        finally:
            self._reshard()
            with torch.no_grad():
                for name, value in saved.items():
                    live[name].copy_(value)
                for buffer, value in buffers:
                    buffer.copy_(value)
            for name, p in self.params.items():
                p.grad = grads[name]

    def _reshard(self) -> None:
        for module in self.model.modules():
            if isinstance(module, FSDPModule):
                module.reshard()


def _same_memory(a: Tensor, b: Tensor) -> bool:
    return a.data_ptr() == b.data_ptr() and a.shape == b.shape and a.stride() == b.stride()


def _check_layout(params: Mapping[str, Tensor]) -> None:
    """Every trained parameter sharded (never replicated) over one mesh dimension spanning all ranks."""
    world = dist.get_world_size() if dist.is_initialized() else 1
    bad = [
        name
        for name, p in params.items()
        if not isinstance(p, DTensor)
        or p.device_mesh.ndim != 1
        or p.device_mesh.size() != world
        or not all(isinstance(placement, Shard) for placement in p.placements)
    ]
    if bad:
        raise OptprobeError(
            f"optprobe supports fully_shard over a one-dimensional mesh of all {world} ranks, with every "
            f"trained parameter sharded; these are not: {', '.join(bad[:10])}"
            + (" …" if len(bad) > 10 else "")
            + " (apply fully_shard to the root module too; HSDP and tensor parallelism are not supported)"
        )
