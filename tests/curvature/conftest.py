"""Tiny float64 models whose exact Hessian fits in memory, and the exact Hessian itself."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from torch import Tensor, nn

from optprobe.curvature import HessianOperator, ParamLayout
from optprobe.evaluation import Evaluator, trained_parameters


@dataclass
class Case:
    name: str
    evaluator: Evaluator
    batch: tuple[Tensor, ...]

    @property
    def params(self) -> dict[str, Tensor]:
        return trained_parameters(self.evaluator.model)

    def operator(self, **kwargs) -> HessianOperator:
        return HessianOperator(self.evaluator, self.params, self.batch, **kwargs)

    def hessian(self) -> Tensor:
        """Exact H by torch.autograd.functional.hessian of ℓ(unflatten(θ)) (double backward, no vmap)."""
        layout = ParamLayout.of(self.params)
        flat = layout.flatten(self.params).detach()
        with torch.random.fork_rng():
            return torch.autograd.functional.hessian(
                lambda theta: self.evaluator.loss_at(layout.unflatten(theta), self.batch), flat
            )


class Quadratic(nn.Module):
    def __init__(self, a: Tensor) -> None:
        super().__init__()
        self.a = a
        self.x = nn.Parameter(torch.linspace(-1, 1, a.shape[0], dtype=a.dtype))

    def forward(self, _: Tensor) -> Tensor:
        return 0.5 * self.x @ self.a @ self.x


class Attention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.qkv = nn.Linear(4, 12)
        self.head = nn.Linear(4, 2)

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        return self.head(nn.functional.scaled_dot_product_attention(q, k, v).mean(dim=1))


def spectrum_case(eigenvalues: list[float], basis: int | None = 1234) -> Case:
    """ℓ(x) = ½ xᵀ Q diag(λ) Qᵀ x, so H = Q diag(λ) Qᵀ exactly, with Q orthogonal from the QR of a Gaussian
    matrix drawn from seed ``basis`` (None: the global generator)."""
    n = len(eigenvalues)
    gen = None if basis is None else torch.Generator().manual_seed(basis)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
    a = q @ torch.diag(torch.tensor(eigenvalues, dtype=torch.float64)) @ q.T
    batch = (torch.zeros(1, dtype=torch.float64),)
    return Case("spectrum", Evaluator(Quadratic(a), lambda m, b: m(b[0])), batch)


def _mse(model: nn.Module, batch: tuple[Tensor, ...]) -> Tensor:
    return 0.5 * ((model(batch[0]) - batch[1]) ** 2).sum(dim=1).mean()


def _xent(model: nn.Module, batch: tuple[Tensor, ...]) -> Tensor:
    return nn.functional.cross_entropy(model(batch[0]), batch[1])


def make_case(name: str) -> Case:
    torch.manual_seed(0)
    dt = torch.float64
    if name == "quadratic":
        return spectrum_case([5.0, 3.0, 2.5] + [1.0] * 6 + [-0.5, -1.0, -2.0], basis=None)
    if name == "mlp":
        model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).to(dt)
        return Case(
            name, Evaluator(model, _mse), (torch.randn(16, 4, dtype=dt), torch.randn(16, 3, dtype=dt))
        )
    if name == "cnn":
        model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Tanh(), nn.Flatten(), nn.Linear(32, 3)).to(dt)
        return Case(
            name, Evaluator(model, _xent), (torch.randn(8, 1, 6, 6, dtype=dt), torch.randint(0, 3, (8,)))
        )
    if name == "batchnorm":
        model = nn.Sequential(nn.Linear(4, 5), nn.BatchNorm1d(5), nn.Tanh(), nn.Linear(5, 2)).to(dt).train()
        return Case(name, Evaluator(model, _xent), (torch.randn(12, 4, dtype=dt), torch.randint(0, 2, (12,))))
    if name == "attention":
        model = Attention().to(dt)
        return Case(
            name, Evaluator(model, _xent), (torch.randn(6, 3, 4, dtype=dt), torch.randint(0, 2, (6,)))
        )
    raise ValueError(name)


CASES = ["quadratic", "mlp", "cnn", "batchnorm", "attention"]


@pytest.fixture(autouse=True)
def _one_thread():
    """The models are tiny, so threads only add synchronisation; on a shared 2-core machine the default
    intra-op pool made this folder ~25x slower (176 s vs 7 s)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(params=CASES)
def case(request: pytest.FixtureRequest) -> Case:
    return make_case(request.param)
