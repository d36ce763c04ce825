"""Normalized and clipped SGD, with norms global over every parameter the optimizer holds.

NormalizedSGD:  m ← β m + (1−β) g;  x ← x − η m / ‖m‖.
ClippedSGD:     d = g (momentum 0) or m ← β m + (1−β) g;  x ← x − min(η, γ/‖d‖) d  (the direction d is
                clipped: the step length is at most γ).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor

from optprobe.optim.closure import evaluate_closure


class _GlobalDirectionSGD(torch.optim.Optimizer):
    """SGD along d = g or its EMA m, with a step size that depends on the global ‖d‖."""

    def _step_size(self, lr: float, norm: float, group: dict) -> float:
        raise NotImplementedError

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:  # type: ignore[override]
        loss = evaluate_closure(closure)
        directions: list[tuple[Tensor, Tensor, dict]] = []
        for group in self.param_groups:
            beta = group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if beta:
                    m = self.state[p].setdefault("momentum_buffer", torch.zeros_like(p))
                    m.mul_(beta).add_(p.grad, alpha=1 - beta)
                    directions.append((p, m, group))
                else:
                    directions.append((p, p.grad, group))
        if not directions:
            return loss
        norm = float(torch.sqrt(sum(d.double().square().sum() for _, d, _ in directions)))
        if norm == 0.0:
            return loss
        for p, d, group in directions:
            p.sub_(d, alpha=self._step_size(group["lr"], norm, group))
        return loss


class NormalizedSGD(_GlobalDirectionSGD):
    """x ← x − η m/‖m‖ with m ← β m + (1−β) g (β = momentum; 0 gives normalized gradient descent)."""

    def __init__(self, params: Iterable[Tensor], lr: float = 0.01, momentum: float = 0.9) -> None:
        super().__init__(params, {"lr": lr, "momentum": momentum})

    def _step_size(self, lr: float, norm: float, group: dict) -> float:
        return lr / norm


class ClippedSGD(_GlobalDirectionSGD):
    """x ← x − min(η, γ/‖d‖) d with d = g, or m ← β m + (1−β) g when momentum β > 0; γ = ``clip``."""

    def __init__(
        self, params: Iterable[Tensor], lr: float = 0.1, clip: float = 1.0, momentum: float = 0.0
    ) -> None:
        super().__init__(params, {"lr": lr, "clip": clip, "momentum": momentum})

    def _step_size(self, lr: float, norm: float, group: dict) -> float:
        return min(lr, group["clip"] / norm)
