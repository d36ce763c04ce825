"""Shared fixtures: tiny models whose metrics have closed forms."""

from __future__ import annotations

import pytest
import torch
from torch import nn


class Quadratic(nn.Module):
    """f(x) = ½ xᵀAx + bᵀx, independent of the batch: the simplest closed-form check."""

    def __init__(self, a: torch.Tensor, b: torch.Tensor, x0: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("a", a)
        self.register_buffer("b", b)
        self.x = nn.Parameter(x0.clone())

    def forward(self, _batch: object) -> torch.Tensor:
        return 0.5 * self.x @ self.a @ self.x + self.b @ self.x


def quadratic_loss(model: nn.Module, batch: object) -> torch.Tensor:
    return model(batch)


def mse_loss(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    x, y = batch
    return ((model(x).squeeze(-1) - y) ** 2).mean()


def logistic_loss(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    x, y = batch
    return nn.functional.binary_cross_entropy_with_logits(model(x).squeeze(-1), y)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def spd_quadratic() -> Quadratic:
    g = torch.Generator().manual_seed(1)
    m = torch.randn(6, 6, generator=g, dtype=torch.float64)
    a = m @ m.T + 0.5 * torch.eye(6, dtype=torch.float64)
    return Quadratic(
        a, torch.randn(6, generator=g, dtype=torch.float64), torch.randn(6, generator=g, dtype=torch.float64)
    )


def train(model, loss_fn, batches, opt, probe=None, epochs=1):
    """The plain loop every test uses; with a probe, the two calls the README documents."""
    for _ in range(epochs):
        for batch in batches:
            if probe is not None:
                probe.begin_step(batch)
            opt.zero_grad()
            loss = loss_fn(model, batch)
            loss.backward()
            if probe is not None:
                probe.end_step(loss)
            opt.step()
        if probe is not None:
            probe.end_epoch()
    if probe is not None:
        probe.close()
