"""Convolutions of data whose gradient graph differentiates cheaply a second time.

For y = w ⋆ x + b with x data (no gradient needed), ∇_w ℓ = K_x(∂ℓ/∂y) with K_x the weight-gradient
map, linear in ∂ℓ/∂y, so a product through the gradient graph needs only K_xᵀ u = u ⋆ x. Autograd's
generic double backward of ``convolution_backward`` also computes the input-gradient term, a transposed
convolution of ∂ℓ/∂y with u, for an input that takes no gradient; with few input channels (a first
layer on images) that transposed convolution is one of the costliest ops of a Hessian-vector product.
:class:`DataConvMode` routes such calls of ``torch.conv1d/2d/3d`` (what ``nn.Conv*d`` and ``F.conv*d``
call) through :class:`_DataConv` while it is entered, and leaves every other call, and the model, alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.overrides import TorchFunctionMode

_CONVS: dict[Callable[..., Tensor], int] = {torch.conv1d: 1, torch.conv2d: 2, torch.conv3d: 3}
_ARGS = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
_DEFAULTS: dict[str, Any] = {"bias": None, "stride": 1, "padding": 0, "dilation": 1, "groups": 1}


@dataclass(frozen=True)
class _Geometry:
    """The convolution (``torch.conv1d/2d/3d``); stride, padding, dilation per spatial dimension; groups."""

    conv: Callable[..., Tensor]
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]
    groups: int

    def __call__(self, x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
        """w ⋆ x + b."""
        return self.conv(x, weight, bias, self.stride, self.padding, self.dilation, self.groups)

    def weight_grad(self, g: Tensor, x: Tensor, weight: Tensor) -> Tensor:
        """K_x g = ∂⟨g, w ⋆ x⟩/∂w (``weight`` only gives the shape)."""
        no_output_padding = [0] * len(self.stride)
        mask = [False, True, False]  # (input, weight, bias): the weight only
        geometry = (self.stride, self.padding, self.dilation, False, no_output_padding, self.groups)
        return torch.ops.aten.convolution_backward(g, x, weight, None, *geometry, mask)[1]


class _WeightGrad(torch.autograd.Function):
    """g ↦ K_x g, the weight gradient of a convolution of data x; backward u ↦ K_xᵀ u = u ⋆ x."""

    @staticmethod
    def forward(ctx: Any, g: Tensor, x: Tensor, weight: Tensor, geometry: _Geometry) -> Tensor:
        ctx.save_for_backward(x)
        ctx.geometry = geometry
        return geometry.weight_grad(g, x, weight)

    @staticmethod
    def backward(ctx: Any, u: Tensor) -> tuple[Tensor, None, None, None]:
        (x,) = ctx.saved_tensors
        return ctx.geometry(x, u), None, None, None


class _DataConv(torch.autograd.Function):
    """y = w ⋆ x + b for data x; backward g ↦ (no input gradient, K_x g, Σ g over batch and space)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Tensor | None, geometry: _Geometry) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.geometry = geometry
        return geometry(x, weight, bias)

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[None, Tensor | None, Tensor | None, None]:
        x, weight = ctx.saved_tensors
        _, needs_weight, needs_bias, _ = ctx.needs_input_grad
        gw = _WeightGrad.apply(g, x, weight.detach(), ctx.geometry) if needs_weight else None
        gb = g.sum(dim=[0, *range(2, g.dim())]) if needs_bias else None
        return None, gw, gb, None


def _per_dim(value: int | Sequence[int], n: int) -> tuple[int, ...] | None:
    if isinstance(value, int):
        return (value,) * n
    if isinstance(value, Sequence) and len(value) == n and all(isinstance(v, int) for v in value):
        return tuple(value)
    return None  # e.g. padding="same": left to the ordinary path


def _data_conv_call(func: Callable[..., Tensor], args: tuple, kwargs: dict) -> tuple | None:
    """(x, w, b, geometry) when ``func(*args, **kwargs)`` is a batched convolution of data by a weight
    that takes a gradient, with integer geometry; otherwise None."""
    n = _CONVS.get(func)
    if n is None or len(args) > len(_ARGS) or not torch.is_grad_enabled():
        return None
    call = {**_DEFAULTS, **dict(zip(_ARGS, args, strict=False)), **kwargs}
    if set(call) != set(_ARGS):
        return None
    x, weight, bias = call["input"], call["weight"], call["bias"]
    plain = all(
        isinstance(t, Tensor) and type(t) in (Tensor, torch.nn.Parameter)
        for t in (x, weight) + (() if bias is None else (bias,))
    )
    if not plain or x.requires_grad or not weight.requires_grad or x.dim() != n + 2:
        return None
    stride, padding, dilation = (_per_dim(call[k], n) for k in ("stride", "padding", "dilation"))
    if stride is None or padding is None or dilation is None or not isinstance(call["groups"], int):
        return None
    return x, weight, bias, _Geometry(func, stride, padding, dilation, call["groups"])


class DataConvMode(TorchFunctionMode):
    """While entered, convolutions of data by weights that take a gradient run as :class:`_DataConv`."""

    def __torch_function__(
        self, func: Callable[..., Any], types: Any, args: tuple = (), kwargs: dict | None = None
    ) -> Any:
        kwargs = kwargs or {}
        call = _data_conv_call(func, args, kwargs)
        if call is None:
            return func(*args, **kwargs)
        return _DataConv.apply(*call)
