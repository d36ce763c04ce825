"""The reference point x*: a checkpoint file, a live module or a state_dict, checked against the model.

x* is its trained parameters and its buffers (BatchNorm running statistics): every pass at x* uses the
buffers the reference provides, so that F(x*) in eval mode is the reference model's own loss. A
persistent buffer of the model that the reference lacks (a parameters-only state_dict) is taken from
the model as it is when the reference is loaded, once, and named in ``missing_buffers``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from optprobe.errors import OptprobeError
from optprobe.evaluation import Params
from optprobe.sharding import shard_like

_CHECKPOINT_KEYS = ("state_dict", "model_state_dict", "model")


@dataclass(frozen=True)
class Reference:
    """x*: its trained parameters and the buffers every pass at x* uses in place of the model's own."""

    params: Params
    buffers: Params
    missing_buffers: tuple[str, ...] = ()  # persistent model buffers x* lacks: the model's at load time


def load_reference(
    reference: str | os.PathLike[str] | nn.Module | Mapping[str, Tensor],
    model: nn.Module,
    params: Mapping[str, Tensor],
) -> Reference:
    """x* as detached tensors matching ``params`` (names, shapes, device, dtype; shards where sharded)
    and the model's buffers (names, shapes, device, dtype).

    A checkpoint may be a bare state_dict or a dict holding one under ``state_dict``,
    ``model_state_dict`` or ``model``; a ``module.`` prefix (DDP) is removed.
    """
    state = _as_state_dict(reference)
    return Reference(_parameters(state, params), *_buffers(state, model))


def _parameters(state: Mapping[str, Tensor], params: Mapping[str, Tensor]) -> Params:
    missing = [n for n in params if n not in state]
    mismatched = [
        f"{n}: model {tuple(p.shape)} vs reference {tuple(state[n].shape)}"
        for n, p in params.items()
        if n in state and tuple(state[n].shape) != tuple(p.shape)
    ]
    if missing or mismatched:
        parts = []
        if missing:
            parts.append(
                f"missing from the reference: {', '.join(missing[:10])}" + (" …" if len(missing) > 10 else "")
            )
        if mismatched:
            parts.append("shape mismatch: " + "; ".join(mismatched[:10]))
        raise OptprobeError(
            "the reference point x* does not match the model's trained parameters ("
            + " | ".join(parts)
            + "); pass a checkpoint of the same architecture"
        )
    return {
        n: shard_like(state[n].detach().to(device=p.device, dtype=p.dtype), p).clone()
        for n, p in params.items()
    }


def _buffers(state: Mapping[str, Tensor], model: nn.Module) -> tuple[Params, tuple[str, ...]]:
    """(x*'s buffers: the reference's, else the model's persistent ones now; the persistent ones it lacks)."""
    persistent = set(model.state_dict(keep_vars=True))
    buffers: Params = {}
    missing: list[str] = []
    mismatched: list[str] = []
    for name, own in model.named_buffers():
        if name in state and tuple(state[name].shape) != tuple(own.shape):
            mismatched.append(f"{name}: model {tuple(own.shape)} vs reference {tuple(state[name].shape)}")
        elif name in state:
            buffers[name] = state[name].detach().to(device=own.device, dtype=own.dtype).clone()
        elif name in persistent:  # a non-persistent buffer (a causal mask) is no state of x: the model's
            buffers[name] = own.detach().clone()
            missing.append(name)
    if mismatched:
        raise OptprobeError(
            "the reference point x* does not match the model's buffers (shape mismatch: "
            + "; ".join(mismatched[:10])
            + "); pass a checkpoint of the same architecture"
        )
    return buffers, tuple(missing)


def _as_state_dict(
    reference: str | os.PathLike[str] | nn.Module | Mapping[str, Tensor],
) -> Mapping[str, Tensor]:
    if isinstance(reference, nn.Module):
        return {**dict(reference.named_buffers()), **dict(reference.named_parameters())}
    if isinstance(reference, (str, os.PathLike)):
        path = Path(reference)
        if not path.is_file():
            raise OptprobeError(
                f"reference checkpoint {path} does not exist; pass the path of a saved state_dict"
            )
        try:
            reference = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many types for unreadable files
            raise OptprobeError(f"cannot read the reference checkpoint {path}: {exc}") from exc
    if not isinstance(reference, Mapping):
        raise OptprobeError(
            "reference must be a checkpoint path, an nn.Module or a state_dict, "
            f"got {type(reference).__name__}"
        )
    for key in _CHECKPOINT_KEYS:
        if isinstance(reference.get(key), Mapping):
            reference = reference[key]
            break
    return {k.removeprefix("module."): v for k, v in reference.items() if isinstance(v, Tensor)}
