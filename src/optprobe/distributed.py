"""Data-parallel support: the probe's own passes reduce across ranks exactly as DDP reduces training.

Under DDP every rank holds the same parameters and, after ``backward()``, the same averaged gradient,
so inner products and norms of those need no communication. The probe's extra passes (the loss and
gradient at x_{t−1} or x*, full-batch sums) bypass DDP's hooks and are all-reduced here: means for
per-batch passes (DDP averages gradients over ranks), sums of example-weighted totals for full-batch
passes. Only rank 0 writes a run directory and feeds sinks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import torch
import torch.distributed as dist
from torch import Tensor, nn

from optprobe.errors import OptprobeError


def is_distributed() -> bool:
    """True inside an initialised process group of more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


T = TypeVar("T")


def on_every_rank(fn: Callable[[], T], device: torch.device) -> T:
    """``fn()``; under data parallelism, if it raises on any rank it raises on every rank.

    For set-up that only rank 0 can get wrong (its run directory): the other ranks would otherwise go
    on to the next collective and wait there until the timeout. ``device`` carries the flag (NCCL needs
    a CUDA tensor).
    """
    error: Exception | None = None
    try:
        result = fn()
    except Exception as exc:  # noqa: BLE001 - re-raised below, on this rank and, as a flag, on the others
        error = exc
    if is_distributed():
        failed = torch.tensor([float(error is not None)], device=device)
        dist.all_reduce(failed)
        if error is None and failed.item() > 0:
            raise OptprobeError("another rank failed while setting up the Probe; its error says why")
    if error is not None:
        raise error
    return result


def unwrap(model: nn.Module) -> nn.Module:
    """The module that DDP or DataParallel wraps, or that torch.compile compiled; else the model itself.

    The Probe measures the unwrapped module, so parameter names carry no ``module.`` or ``_orig_mod.``
    prefix and a reference saved from the plain model matches; its extra passes run uncompiled.
    """
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):  # torch.compile's OptimizedModule
            model = model._orig_mod
        else:
            return model


def all_reduce_(tensors: Sequence[Tensor], mean: bool) -> None:
    """In place: the sum (or mean) over ranks of each tensor, in one collective (on a flat buffer when
    there are several tensors; a single contiguous tensor is reduced where it lies)."""
    if not is_distributed() or not tensors:
        return
    if len(tensors) == 1 and tensors[0].is_contiguous():  # in place: no flat copy of a large tensor
        dist.all_reduce(tensors[0])
        if mean:
            tensors[0] /= dist.get_world_size()
        return
    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat)
    if mean:
        flat /= dist.get_world_size()
    for t, piece in zip(tensors, flat.split([t.numel() for t in tensors]), strict=True):
        t.copy_(piece.view_as(t))
