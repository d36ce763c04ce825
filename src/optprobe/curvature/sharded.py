"""Hessian-vector products of a ``fully_shard``-ed (FSDP2) model by central differences of gradients:
H v ≈ (∇ℓ(x + h v) − ∇ℓ(x − h v)) / 2h, error O(h² ‖∇³ℓ‖ ‖v‖³) + O(ε_mach ‖∇ℓ‖ / h).

torch.func cannot run through FSDP's hooks and double backward through its all-gathers is not supported,
so each product is two ordinary gradient passes of the sharded model (the
:class:`~optprobe.sharding.ShardedEvaluator` shifts its live local shards to x ± h v and restores them;
FSDP's reduce-scatter makes ∇ℓ the rank mean, so H is the Hessian of the rank-mean loss, as under DDP).
Vectors are whole and the same on every rank: each rank shifts its own shard of v, and the local shards of
the difference are all-gathered into a whole H v, so Lanczos and Hutchinson run unchanged, and identically,
on every rank (memory: whole d-vectors per rank, the price of reusing them; the model stays sharded). The
step h = ε_mach^{1/3} · max(1, ‖x‖) / ‖v‖ balances the two error terms.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import torch
from torch import Tensor
from torch.distributed.tensor import DTensor

from optprobe.curvature.hvp import ParamLayout
from optprobe.curvature.operator import MatmulMixin
from optprobe.distributed import all_reduce_
from optprobe.evaluation import Batch, Evaluator, RngState
from optprobe.sharding import shard_like


class ShardedHessianOperator(MatmulMixin):
    """v ↦ ∇²ℓ(x, z) v for a ``fully_shard``-ed model at x (this rank's local shards) on this rank's batch z,
    or, with ``loader``, v ↦ ∇²F(x) v for F over every rank's eval chunks (F's ``seed`` and masks, as
    :meth:`~optprobe.evaluation.Evaluator.full_loss_and_grad` computes ∇F); v (d,) or a stack (k, d) of
    whole vectors, the same on every rank."""

    def __init__(
        self, evaluator: Evaluator, params: Mapping[str, Tensor], batch: Batch | None = None,
        loader: Iterable[Batch] | None = None, seed: int = 0,
    ) -> None:  # fmt: skip
        if (batch is None) == (loader is None):
            raise ValueError("pass the batch (ℓ's Hessian) or the loader (F's), not both")
        self.evaluator = evaluator
        self.live = evaluator.params  # the model's DTensor parameters: global shapes, mesh, placements
        self.point = {name: p.detach() for name, p in params.items()}
        self.batch, self.loader, self.seed = batch, loader, seed
        self.layout = ParamLayout.of({name: self.live[name] for name in self.point})
        first = next(iter(self.point.values()))
        self.dtype, self.device = first.dtype, first.device
        self.n_hvps = 0
        self._rng = RngState.capture(self.device)  # every pass replays the same dropout masks
        squares = sum(float(p.double().pow(2).sum()) for p in self.point.values())
        total = torch.tensor(squares, dtype=torch.float64, device=self.device)
        all_reduce_([total], mean=False)  # ‖x‖² = Σ_r ‖x_r‖²
        self._scale = max(1.0, math.sqrt(float(total))) * torch.finfo(self.dtype).eps ** (1 / 3)

    @property
    def dim(self) -> int:
        return self.layout.dim

    def __call__(self, v: Tensor) -> Tensor:
        """H v for v of shape (d,), or row-wise for V of shape (k, d)."""
        stack = v.reshape(-1, self.dim).to(self.dtype)
        self.n_hvps += stack.shape[0]
        return torch.stack([self._product(row) for row in stack]).reshape(v.shape)

    def _product(self, v: Tensor) -> Tensor:
        norm = float(v.norm())
        if norm == 0.0:
            return torch.zeros_like(v)
        h = self._scale / norm
        shards = {name: self._local(name, whole) for name, whole in self.layout.unflatten(v).items()}
        plus = self._grad({name: x + h * shards[name] for name, x in self.point.items()})
        minus = self._grad({name: x - h * shards[name] for name, x in self.point.items()})
        whole = {name: self._whole(name, (plus[name] - minus[name]) / (2 * h)) for name in self.point}
        return self.layout.flatten(whole)

    def _grad(self, point: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """The local shards of the rank-mean ∇ℓ(point, z), or of ∇F(point) with a loader."""
        if self.loader is not None:
            _, grad, _ = self.evaluator.full_loss_and_grad(point, self.loader, self.seed)
            assert grad is not None
            return dict(grad)
        grads: dict[str, Tensor] = {}
        self.evaluator.stream_grad(point, self.batch, grads.__setitem__, rng=self._rng, across_ranks=False)
        return grads

    def _local(self, name: str, whole: Tensor) -> Tensor:
        """This rank's shard of a whole tensor shaped like parameter ``name`` (no communication)."""
        return shard_like(whole, self.live[name])

    def _whole(self, name: str, shard: Tensor) -> Tensor:
        """The whole tensor whose local shard (sharded as parameter ``name``) this rank holds."""
        param = self.live[name]
        if not isinstance(param, DTensor):
            return shard
        mesh, placements, shape = param.device_mesh, param.placements, param.shape
        return DTensor.from_local(shard, mesh, placements, shape=shape, stride=param.stride()).full_tensor()

