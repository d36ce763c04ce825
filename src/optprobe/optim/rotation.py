"""Rotated losses (Xie et al.): train w while the model sees θ = R w, R a structured random orthogonal map.

R is k chained rounds of: a random permutation of the d coordinates, then the first n = a·b·c of them
(a = b = ⌊d^{1/3}⌋, c = ⌊d/(ab)⌋, so fewer than ab ≈ d^{2/3} are left out) reshaped to an (a, b, c)
tensor with a random orthogonal matrix applied along each mode. Each round is orthogonal, so R is, and
the next round's permutation mixes the left-out coordinates in. R is never formed: applying R or Rᵀ
costs O(d (a + b + c)) per round, i.e. O(k d^{4/3}) flops, forward and backward alike, and stores
k (d + a² + b² + c²) numbers.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from optprobe.errors import OptprobeError
from optprobe.reductions import layer_of

SCOPES = ("global", "module")


def random_orthogonal(n: int, generator: torch.Generator, dtype: torch.dtype = torch.float64) -> Tensor:
    """A Haar-random n×n orthogonal matrix: QR of a Gaussian matrix with the signs of R's diagonal fixed."""
    q, r = torch.linalg.qr(torch.randn(n, n, generator=generator, dtype=torch.float64))
    return (q * torch.sign(torch.diagonal(r))).to(dtype)


class StructuredRotation(nn.Module):
    """θ = R w on vectors of length ``dim`` (see the module docstring); ``inverse`` applies Rᵀ = R⁻¹."""

    def __init__(self, dim: int, rounds: int = 1, seed: int = 0, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        if dim < 1 or rounds < 0:
            raise OptprobeError(f"a rotation needs dim ≥ 1 and rounds ≥ 0, got dim={dim}, rounds={rounds}")
        self.dim, self.rounds = dim, rounds
        side = max(1, math.floor(round(dim ** (1 / 3), 9)))
        self.shape = (side, side, max(1, dim // (side * side)))
        self.head = math.prod(self.shape) if math.prod(self.shape) <= dim else dim
        gen = torch.Generator().manual_seed(seed)
        for r in range(rounds + (1 if rounds == 0 else 0)):
            perm = torch.randperm(dim, generator=gen)
            self.register_buffer(f"perm{r}", perm)
            self.register_buffer(f"inv{r}", torch.argsort(perm))
            for mode, n in enumerate(self.shape):
                eye = torch.eye(n, dtype=dtype)
                self.register_buffer(f"q{r}_{mode}", eye if rounds == 0 else random_orthogonal(n, gen, dtype))

    def _mix(self, w: Tensor, r: int, transpose: bool) -> Tensor:
        head, tail = w[: self.head], w[self.head :]
        q = [getattr(self, f"q{r}_{mode}") for mode in range(3)]
        if transpose:
            q = [m.T for m in q]
        mixed = head.reshape(self.shape)  # one mode at a time: O(abc (a + b + c))
        mixed = torch.einsum("ia,abc->ibc", q[0], mixed)
        mixed = torch.einsum("jb,ibc->ijc", q[1], mixed)
        mixed = torch.einsum("kc,ijc->ijk", q[2], mixed)
        return torch.cat([mixed.reshape(-1), tail])

    def forward(self, w: Tensor) -> Tensor:
        """R w."""
        for r in range(max(self.rounds, 1)):
            w = self._mix(w[getattr(self, f"perm{r}")], r, transpose=False)
        return w

    def inverse(self, theta: Tensor) -> Tensor:
        """Rᵀ θ = R⁻¹ θ."""
        for r in reversed(range(max(self.rounds, 1))):
            theta = self._mix(theta, r, transpose=True)[getattr(self, f"inv{r}")]
        return theta


class RotatedModel(nn.Module):
    """Trains w_g = R_gᵀ θ_g instead of the model's parameters θ_g, one group per scope.

    The forward pass computes θ_g = R_g w_g and calls the model with them (torch.func.functional_call);
    the model's own parameters stay registered but frozen, as the layout θ is unflattened into.
    ``scope="global"`` rotates all parameters together, ``"module"`` each layer separately.
    """

    def __init__(self, model: nn.Module, rounds: int = 1, seed: int = 0, scope: str = "global") -> None:
        super().__init__()
        if scope not in SCOPES:
            raise OptprobeError(f"scope must be one of {SCOPES}, got {scope!r}")
        self.model = model
        trained = {n: p for n, p in model.named_parameters() if p.requires_grad}
        groups: dict[str, list[str]] = {}
        for name in trained:
            groups.setdefault("all" if scope == "global" else layer_of(name), []).append(name)
        self.groups = list(groups.values())
        self.shapes = {n: p.shape for n, p in trained.items()}
        self.rotations = nn.ModuleList()
        self.w = nn.ParameterList()
        for i, names in enumerate(self.groups):
            flat = torch.cat([trained[n].detach().reshape(-1) for n in names])
            # drawn on the CPU (the same R on every device), then moved to where the parameters live
            rotation = StructuredRotation(flat.numel(), rounds, seed + i, flat.dtype).to(flat.device)
            self.rotations.append(rotation)
            self.w.append(nn.Parameter(rotation.inverse(flat)))
        for p in trained.values():
            p.requires_grad_(False)

    def thetas(self) -> dict[str, Tensor]:
        """θ = R w, as the model's named parameters."""
        out: dict[str, Tensor] = {}
        for names, rotation, w in zip(self.groups, self.rotations, self.w, strict=True):
            pieces = rotation(w).split([math.prod(self.shapes[n]) for n in names])
            out.update({n: piece.view(self.shapes[n]) for n, piece in zip(names, pieces, strict=True)})
        return out

    def forward(self, *args: object, **kwargs: object) -> Tensor:
        return torch.func.functional_call(self.model, self.thetas(), args, kwargs)


def rotate_model(model: nn.Module, rounds: int = 1, seed: int = 0, scope: str = "global") -> RotatedModel:
    """The model trained through θ = R w: hand ``rotated.parameters()`` (the w's) to any optimizer."""
    return RotatedModel(model, rounds, seed, scope)
