"""The reference point x*: a checkpoint file, a live module or a state_dict, checked against the model."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from optprobe.errors import OptprobeError
from optprobe.evaluation import Params
from optprobe.sharding import shard_like

_CHECKPOINT_KEYS = ("state_dict", "model_state_dict", "model")


def load_reference(
    reference: str | os.PathLike[str] | nn.Module | Mapping[str, Tensor], params: Mapping[str, Tensor]
) -> Params:
    """x* as detached tensors matching ``params`` in names, shapes, device and dtype (shards where sharded).

    A checkpoint may be a bare state_dict or a dict holding one under ``state_dict``,
    ``model_state_dict`` or ``model``; a ``module.`` prefix (DDP) is removed; buffers are ignored.
    """
    state = _as_state_dict(reference)
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


def _as_state_dict(
    reference: str | os.PathLike[str] | nn.Module | Mapping[str, Tensor],
) -> Mapping[str, Tensor]:
    if isinstance(reference, nn.Module):
        return dict(reference.named_parameters())
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
