"""Rotated losses: R is orthogonal, SGD and AdaSGD are rotation-equivariant, Adam only permutation-
equivariant (Xie et al., Thm 2.2); Adam, AdamW and AdamProx are scale-free, Adam+L2 is not (Orabona)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from optprobe.optim import AdamProx, AdaSGD, StructuredRotation, rotate_model


@pytest.mark.parametrize("dim", [1, 7, 64, 1000])
def test_small_rotation_matrix_is_orthogonal(dim):
    rotation = StructuredRotation(dim, rounds=2, seed=1, dtype=torch.float64)
    matrix = torch.stack(
        [rotation(e) for e in torch.eye(dim, dtype=torch.float64)], dim=1
    )  # column j = R e_j
    torch.testing.assert_close(matrix.T @ matrix, torch.eye(dim, dtype=torch.float64), rtol=0, atol=1e-12)
    assert dim < 8 or not torch.allclose(matrix.abs(), (matrix.abs() > 0.5).double())  # not a permutation


def test_large_rotation_preserves_norms_and_inverts_without_building_r():
    dim = 1_000_003
    rotation = StructuredRotation(dim, rounds=2, seed=0, dtype=torch.float64)
    w = torch.randn(dim, dtype=torch.float64)
    theta = rotation(w)
    assert theta.norm().item() == pytest.approx(w.norm().item(), rel=1e-12)
    torch.testing.assert_close(rotation.inverse(theta), w, rtol=0, atol=1e-12)
    assert (theta - w).abs().max() > 0.1


def _problem():
    torch.manual_seed(4)
    g = torch.Generator().manual_seed(4)
    x = torch.randn(64, 6, generator=g, dtype=torch.float64)
    y = torch.randn(64, 2, generator=g, dtype=torch.float64)
    model = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 2)).double()
    return model, x, y


def _trajectory(model: nn.Module, params, opt_cls, x, y, steps=8, theta_of=None, **kw):
    opt = opt_cls(params, **kw)
    out = []
    for t in range(steps):
        xb, yb = x[8 * t : 8 * t + 8], y[8 * t : 8 * t + 8]
        opt.zero_grad()
        ((model(xb) - yb) ** 2).mean().backward()
        opt.step()
        with torch.no_grad():
            out.append(theta_of() if theta_of else torch.cat([p.reshape(-1) for p in model.parameters()]))
    return out


def _rotated_vs_plain(opt_cls, rounds, **kw):
    model, x, y = _problem()
    plain = _trajectory(model, list(model.parameters()), opt_cls, x, y, **kw)
    model, x, y = _problem()
    rotated = rotate_model(model, rounds=rounds, seed=5)

    def theta_of():
        return torch.cat([t.reshape(-1) for t in rotated.thetas().values()])

    turned = _trajectory(rotated, list(rotated.parameters()), opt_cls, x, y, theta_of=theta_of, **kw)
    return max(float((a - b).abs().max()) for a, b in zip(plain, turned, strict=True))


@pytest.mark.parametrize("opt_cls", [torch.optim.SGD, AdaSGD], ids=["sgd", "adasgd"])
def test_sgd_and_adasgd_are_rotation_equivariant(opt_cls):
    assert _rotated_vs_plain(opt_cls, rounds=2, lr=0.05) < 1e-12


def test_adam_is_permutation_but_not_rotation_equivariant():
    assert _rotated_vs_plain(torch.optim.Adam, rounds=0, lr=0.05) < 1e-12
    assert _rotated_vs_plain(torch.optim.Adam, rounds=2, lr=0.05) > 1e-3


@pytest.mark.parametrize(
    ("opt_cls", "kw", "scale_free"),
    [
        (torch.optim.Adam, {}, True),
        (torch.optim.AdamW, {"weight_decay": 0.1}, True),
        (AdamProx, {"weight_decay": 0.1}, True),
        (torch.optim.Adam, {"weight_decay": 0.1}, False),  # Adam + L2
    ],
    ids=["adam", "adamw", "adam_prox", "adam_l2"],
)
def test_scale_freeness(opt_cls, kw, scale_free):
    """Scaling each gradient coordinate by a fixed c_i > 0 leaves the iterates unchanged (ε → 0)."""
    g = torch.Generator().manual_seed(9)
    scales = torch.rand(10, generator=g, dtype=torch.float64) * 100 + 0.01
    runs = []
    for c in (torch.ones(10, dtype=torch.float64), scales):
        w = nn.Parameter(torch.linspace(-1, 1, 10, dtype=torch.float64))
        opt = opt_cls([w], lr=0.01, eps=1e-30, **kw)
        for t in range(10):
            grad = torch.sin(torch.arange(10, dtype=torch.float64) * (t + 1)) + w.detach()
            w.grad = c * grad
            opt.step()
        runs.append(w.detach().clone())
    gap = float((runs[0] - runs[1]).abs().max())
    assert (gap < 1e-12) if scale_free else (gap > 1e-4)


def test_rotation_is_built_where_the_model_lives():
    """A model already on another device (meta here, standing in for CUDA) gets its R there too."""
    model = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 2)).to("meta")
    rotated = rotate_model(model, rounds=2, seed=0)
    assert {t.device.type for t in [*rotated.parameters(), *rotated.buffers()]} == {"meta"}
    assert rotated(torch.empty(3, 6, device="meta")).shape == (3, 2)
