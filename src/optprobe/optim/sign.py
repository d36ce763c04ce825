"""Generalized signSGD: m ← β1 m + (1−β1) g;  v ← β2 v + (1−β2) m²;  x ← x − η m / (√v + ε).

m_0 = v_0 = 0 and no bias correction, as written. β2 = 0 gives v = m², i.e. signSGD with momentum,
x ← x − η m / (|m| + ε).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor

from optprobe.optim.closure import evaluate_closure


class GeneralizedSignSGD(torch.optim.Optimizer):
    """See the module docstring; the second moment is of the momentum m, not of the gradient."""

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.99),
        eps: float = 1e-8,
    ) -> None:
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps})

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:  # type: ignore[override]
        loss = evaluate_closure(closure)
        for group in self.param_groups:
            (beta1, beta2), eps = group["betas"], group["eps"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["exp_avg"], state["exp_avg_sq"] = torch.zeros_like(p), torch.zeros_like(p)
                m, v = state["exp_avg"], state["exp_avg_sq"]
                m.mul_(beta1).add_(p.grad, alpha=1 - beta1)
                v.mul_(beta2).addcmul_(m, m, value=1 - beta2)
                p.sub_(group["lr"] * m / (v.sqrt() + eps))
        return loss
