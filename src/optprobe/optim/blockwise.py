"""Adam with one second moment per block of coordinates (Xie et al.), and its two named extremes.

m ← β1 m + (1−β1) g;  v_b ← β2 v_b + (1−β2) mean_{i∈b} g_i²;  x ← x − η m̂ / (√v̂_b + ε)
with m̂ = m/(1−β1^t), v̂ = v/(1−β2^t), t counted per block, and a trained parameter without a gradient in
a step counting as zeros in the block mean (it does not move); frozen ones belong to no block. Singleton
blocks give Adam, one block per parameter group gives AdaSGD (rotation-equivariant). Weight decay λ is
either decoupled (AdamW: x ← x − ηλx before the step) or proximal
(AdamProx: x ← (x − η m̂/(√v̂ + ε)) / (1 + λη), the prox of (λ/2)‖x‖²).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

from optprobe.errors import OptprobeError
from optprobe.optim.closure import evaluate_closure
from optprobe.reductions import layer_of

PARTITIONS = ("coordinate", "tensor", "layer", "group")
WEIGHT_DECAY_MODES = ("decoupled", "proximal")


class BlockwiseAdam(torch.optim.Optimizer):
    """Adam whose second moment is shared within blocks; see the module docstring for the update.

    ``partition``: "coordinate" (Adam), "tensor", "layer" (parameters grouped by owning module; pass
    ``named_parameters()``), "group" (one block per parameter group: AdaSGD) or a function
    name → block id (pass ``named_parameters()``).
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        partition: str | Callable[[str], str] = "tensor",
        weight_decay_mode: str = "decoupled",
    ) -> None:
        if not callable(partition) and partition not in PARTITIONS:
            raise OptprobeError(f"partition must be one of {PARTITIONS} or a callable, got {partition!r}")
        if weight_decay_mode not in WEIGHT_DECAY_MODES:
            raise OptprobeError(
                f"weight_decay_mode must be one of {WEIGHT_DECAY_MODES}, got {weight_decay_mode!r}"
            )
        params = list(params)
        named = bool(params) and isinstance(params[0], tuple)
        if (partition == "layer" or callable(partition)) and not named:
            raise OptprobeError(
                "partition by layer or by a function needs names: pass model.named_parameters()"
            )
        names = [n for n, _ in params] if named else None
        tensors = [p for _, p in params] if named else params
        self.partition = partition
        self.weight_decay_mode = weight_decay_mode
        defaults = {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay}
        super().__init__(tensors, defaults)
        if names is not None:
            if len(self.param_groups) != 1:
                raise OptprobeError("named parameters must come as one group")
            self.param_groups[0]["names"] = names

    def _blocks(self, group: dict[str, Any]) -> list[list[int]]:
        """Indices (into the group's params) of each block; "coordinate" blocks are per tensor, per entry."""
        params = group["params"]
        if self.partition in ("coordinate", "tensor"):
            return [[i] for i in range(len(params))]
        if self.partition == "group":
            return [list(range(len(params)))]
        key = layer_of if self.partition == "layer" else self.partition
        blocks: dict[str, list[int]] = {}
        for i, name in enumerate(group["names"]):
            blocks.setdefault(key(name), []).append(i)
        return list(blocks.values())

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:  # type: ignore[override]
        loss = evaluate_closure(closure)
        for group in self.param_groups:
            lr, (beta1, beta2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
            for block in self._blocks(group):
                params = [group["params"][i] for i in block if group["params"][i].requires_grad]
                members = [p for p in params if p.grad is not None]
                if not members:
                    continue
                # the block's step count, and its one second moment unless blocks are coordinates, live
                # with its first parameter, whether or not that one has a gradient or is frozen now
                head = self.state[group["params"][block[0]]]
                step = head["step"] = head.get("step", 0) + 1
                corr1, corr2 = 1 - beta1**step, 1 - beta2**step
                if self.partition != "coordinate":  # a missing gradient counts as zero: N is the whole block
                    if "exp_avg_sq" not in head:
                        head["exp_avg_sq"] = members[0].new_zeros(())
                    shared_v = head["exp_avg_sq"]
                    sum_sq = sum(p.grad.square().sum() for p in members)
                    shared_v.mul_(beta2).add_(sum_sq / sum(p.numel() for p in params), alpha=1 - beta2)
                for p in members:
                    state = self.state[p]
                    if "exp_avg" not in state:
                        state["exp_avg"] = torch.zeros_like(p)
                    m = state["exp_avg"]
                    m.mul_(beta1).add_(p.grad, alpha=1 - beta1)
                    if self.partition == "coordinate":
                        if "exp_avg_sq" not in state:
                            state["exp_avg_sq"] = torch.zeros_like(p)
                        v = state["exp_avg_sq"].mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
                    else:
                        v = shared_v
                    if wd and self.weight_decay_mode == "decoupled":
                        p.mul_(1 - lr * wd)
                    p.sub_(lr * (m / corr1) / ((v / corr2).sqrt() + eps))
                    if wd and self.weight_decay_mode == "proximal":
                        p.div_(1 + lr * wd)
        return loss


class AdaSGD(BlockwiseAdam):
    """Adam with one scalar second moment per parameter group: v ← β2 v + (1−β2)‖g‖²/N."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, partition="group")


class AdamProx(BlockwiseAdam):
    """Adam followed by the prox of (λ/2)‖x‖²: x ← (x − η m̂/(√v̂ + ε)) / (1 + λη)."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
    ) -> None:
        super().__init__(
            params, lr, betas, eps, weight_decay, partition="coordinate", weight_decay_mode="proximal"
        )
