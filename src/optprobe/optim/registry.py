"""Optimizers by the names configs use, with the defaults the studies used.

Defaults follow common practice in the studies (Tran et al.; Xie et al.; Orabona): SGD with momentum
0.9 at lr 0.1, Adam/AdamW at lr 1e-3 with betas (0.9, 0.999), weight decay 0.01 for the decoupled
and proximal variants and for Adam+L2. Every default can be overridden by keyword (configs pass lr).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

from optprobe.errors import OptprobeError
from optprobe.optim.blockwise import AdamProx, AdaSGD, BlockwiseAdam
from optprobe.optim.normalized import ClippedSGD, NormalizedSGD
from optprobe.optim.random_scaling import RandomScaling
from optprobe.optim.sign import GeneralizedSignSGD


def _lion(params: Iterable[Tensor], **kwargs: Any) -> torch.optim.Optimizer:
    if hasattr(torch.optim, "Lion"):
        return torch.optim.Lion(params, **kwargs)
    try:
        from lion_pytorch import Lion
    except ImportError:
        raise OptprobeError(
            "the 'lion' optimizer needs the lion-pytorch package: pip install lion-pytorch"
        ) from None
    return Lion(params, **kwargs)


# name -> (constructor, defaults, whether it takes (name, tensor) pairs)
OPTIMIZERS: dict[str, tuple[Callable[..., torch.optim.Optimizer], dict[str, Any], bool]] = {
    "sgd": (torch.optim.SGD, {"lr": 0.1}, False),
    "sgdm": (torch.optim.SGD, {"lr": 0.1, "momentum": 0.9}, False),
    "adam": (torch.optim.Adam, {"lr": 1e-3}, False),
    "adamw": (torch.optim.AdamW, {"lr": 1e-3, "weight_decay": 0.01}, False),
    "adam_l2": (torch.optim.Adam, {"lr": 1e-3, "weight_decay": 0.01}, False),
    "amsgrad": (torch.optim.Adam, {"lr": 1e-3, "amsgrad": True}, False),
    "adagrad": (torch.optim.Adagrad, {"lr": 0.01}, False),
    "rmsprop": (torch.optim.RMSprop, {"lr": 1e-3}, False),
    "lion": (_lion, {"lr": 1e-4, "weight_decay": 0.0}, False),
    "adasgd": (AdaSGD, {"lr": 1e-3}, False),
    "blockwise_adam": (BlockwiseAdam, {"lr": 1e-3, "partition": "layer"}, True),
    "adam_prox": (AdamProx, {"lr": 1e-3, "weight_decay": 0.01}, False),
    "signsgd": (GeneralizedSignSGD, {"lr": 1e-3, "betas": (0.9, 0.0)}, False),
    "generalized_signsgd": (GeneralizedSignSGD, {"lr": 1e-3, "betas": (0.9, 0.99)}, False),
    "normalized_sgd": (NormalizedSGD, {"lr": 0.01, "momentum": 0.9}, False),
    "clipped_sgd": (ClippedSGD, {"lr": 0.1, "clip": 1.0}, False),
}


def build_optimizer(
    name: str, named_params: Iterable[tuple[str, Tensor]], *, random_scaling: bool = False, seed: int = 0,
    **overrides: Any,
) -> torch.optim.Optimizer:  # fmt: skip
    """The optimizer ``name`` over ``named_params`` (``model.named_parameters()``; frozen ones are skipped),
    with the registry's defaults updated by ``overrides``; wrapped in :class:`RandomScaling` on request."""
    if name not in OPTIMIZERS:
        close = difflib.get_close_matches(name, OPTIMIZERS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise OptprobeError(f"unknown optimizer {name!r}{hint}; choose from {', '.join(OPTIMIZERS)}")
    constructor, defaults, takes_names = OPTIMIZERS[name]
    named = [(n, p) for n, p in named_params if p.requires_grad]
    params: list[Any] = named if takes_names else [p for _, p in named]
    try:
        optimizer = constructor(params, **{**defaults, **overrides})
    except TypeError as exc:
        raise OptprobeError(f"optimizer {name!r} does not take these options: {exc}") from None
    return RandomScaling(optimizer, seed=seed) if random_scaling else optimizer
