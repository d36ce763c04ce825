"""The ``closure`` convention of ``torch.optim.Optimizer.step``: re-evaluate the loss with gradients on."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def evaluate_closure(closure: Callable[[], Tensor] | None) -> Tensor | None:
    """``closure()`` under ``enable_grad`` (steps run under ``no_grad``), or None without a closure."""
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()
