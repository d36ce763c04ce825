"""What the Probe reads off the training loop at a measured step: g_t from ``.grad`` (unscaled under a
GradScaler), ℓ(x_t, z_t) averaged over ranks, and the optimizer's learning rate and random scaling s_t."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from optprobe.distributed import all_reduce_, is_distributed
from optprobe.errors import OptprobeError
from optprobe.evaluation import Params
from optprobe.sharding import local


def unscale_gradients(scaler: torch.amp.GradScaler | None, optimizer: torch.optim.Optimizer | None) -> None:
    """.grad ← .grad / scale under a GradScaler, once a step (its ``unscale_`` refuses a second call)."""
    if scaler is None or not scaler.is_enabled():
        return
    if not unscaled_this_step(scaler, optimizer):
        scaler.unscale_(optimizer)


def unscaled_this_step(scaler: torch.amp.GradScaler, optimizer: torch.optim.Optimizer) -> bool:
    """Whether ``scaler.unscale_(optimizer)`` was called since the last ``update``.

    GradScaler has no public way to ask: its ``unscale_`` raises a RuntimeError when called twice (a
    message, not a type, tells it from its other errors), so this reads the stage GradScaler keeps per
    optimizer. tests/core/test_torch_internals.py fails, naming this function, when torch changes it.
    """
    from torch.amp.grad_scaler import OptState

    return scaler._per_optimizer_states[id(optimizer)]["stage"] is OptState.UNSCALED


def gradients(model: nn.Module, params: Params) -> Params:
    """g_t: each trained tensor's ``.grad`` (this rank's shard under fully_shard; zeros where it is None)."""
    if [n for n, p in model.named_parameters() if p.requires_grad] != list(params):
        raise OptprobeError(
            "the set of parameters with requires_grad changed since the Probe was built (gradual "
            "unfreezing?); the Probe measures a fixed x: build a new Probe after freezing or unfreezing"
        )
    grads = {name: p.grad for name, p in params.items()}
    if all(g is None for g in grads.values()):
        raise OptprobeError(
            "no trained parameter has a .grad: call probe.end_step(loss) after loss.backward() and "
            "before optimizer.step() / optimizer.zero_grad()"
        )
    return {
        n: torch.zeros_like(local(params[n].detach())) if g is None else local(g.detach())
        for n, g in grads.items()
    }


def loss_averaged_over_ranks(loss: Tensor | float, device: torch.device) -> Tensor:
    """The step's loss averaged over data-parallel ranks (the local value without a process group), as a
    float64 tensor on ``device``: not copied to the host here; ``loss`` itself is never modified."""
    value = torch.as_tensor(loss.detach() if isinstance(loss, Tensor) else loss, device=device)
    value = value.reshape(()).to(torch.float64)
    if is_distributed():
        value = value.clone()
        all_reduce_([value], mean=True)
    return value


def optimizer_columns(optimizer: torch.optim.Optimizer | None) -> dict[str, float]:
    """The row's ``lr`` (the first group's) and, under random scaling only, ``scale`` = s_t."""
    if optimizer is None:
        return {}
    columns = {"lr": float(optimizer.param_groups[0]["lr"])}
    scaling = random_scaling(optimizer)
    if scaling is not None:  # s_t exists only under random scaling: no made-up 1.0 without it
        columns["scale"] = float(scaling.last_scale)
    return columns


def scale_and_weight(optimizer: torch.optim.Optimizer | None) -> tuple[float, float]:
    """(s_t, its importance weight) under random scaling; (1, 1) without it."""
    scaling = random_scaling(optimizer)
    return float(getattr(scaling, "last_scale", 1.0)), float(getattr(scaling, "last_weight", 1.0))


def random_scaling(optimizer: Any) -> Any:
    """The optimizer reporting ``last_scale`` (random scaling) inside wrappers that keep theirs as
    ``.optimizer`` (accelerate's, under a Trainer), or None; RandomScaling itself is found first."""
    for _ in range(8):  # a chain of wrappers, never a cycle
        if optimizer is None or hasattr(optimizer, "last_scale"):
            return optimizer
        optimizer = getattr(optimizer, "optimizer", None)
    return None
