"""The Probe's refusals of what it cannot measure: each check names the problem and what to pass instead."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence

import torch
from torch import Tensor

from optprobe.errors import OptprobeError
from optprobe.evaluation import Batch, batch_devices
from optprobe.metrics.base import PeriodicMetric


def check_shardable(periodic: Sequence[PeriodicMetric]) -> None:
    """Under fully_shard only Sharpness and HessianTrace run (products by finite differences)."""
    refused = [m for m in periodic if not getattr(m, "sharded", False)]
    if refused:
        raise OptprobeError(
            "periodic (curvature) metrics other than Sharpness and HessianTrace need whole parameters and "
            f"are not supported under fully_shard (got {type(refused[0]).__name__}); measure them on an "
            "unsharded copy of the model"
        )


def check_real(params: Mapping[str, Tensor]) -> None:
    """The metrics are defined for real x: refuse complex parameters, saying what to train instead."""
    complex_params = [name for name, p in params.items() if p.is_complex()]
    if complex_params:
        raise OptprobeError(
            f"complex parameters ({', '.join(complex_params[:3])}) are not supported: the metrics are "
            "defined for real x; train torch.view_as_real views as real parameters instead"
        )


def check_reusable(eval_loader: Iterable[Batch] | None) -> None:
    """F is measured again and again: a one-shot iterator (a generator) would be empty after the first."""
    if isinstance(eval_loader, Iterator):
        raise OptprobeError(
            f"eval_loader is a one-shot iterator ({type(eval_loader).__name__}), but the full-batch loss "
            "F is measured many times: pass a list of batches or a DataLoader"
        )


def check_batch_device(batch: Batch, param_device: torch.device) -> None:
    """Refuse a batch with no tensor on the parameters' device type (CPU lengths beside them are fine)."""
    devices = batch_devices(batch)
    # a tensor off the model's device beside others on it is fine (CPU lengths for pack_padded_sequence)
    if devices and all(device.type != param_device.type for device in devices):
        found = ", ".join(sorted(map(str, devices)))
        raise OptprobeError(
            f"the batch is on {found} but the model's parameters are on {param_device}: move the batch "
            "to the model's device before probe.begin_step(batch)"
        )


def check_scalar_loss(loss: Tensor | float | None) -> None:
    """end_step takes the training loss ℓ(x_t, z_t): one number, not a tensor of per-example losses."""
    if isinstance(loss, Tensor) and loss.numel() != 1:
        raise OptprobeError(
            f"end_step(loss) needs the scalar training loss, got a tensor of shape {tuple(loss.shape)}: "
            "pass the mean loss you called backward() on"
        )


def missing_buffers_message(missing: Sequence[str]) -> str:
    """Why eval-mode passes at a reference without its buffers do not measure the reference's own F."""
    return (
        f"the reference has no {', '.join(missing[:5])}" + (" …" if len(missing) > 5 else "")
        + "; eval-mode passes at x* use the model's buffers as they are now, when the Probe is built, so "
        "F(x*) is not the reference model's own loss: pass a reference with its buffers (a module, or its "
        "full state_dict)"
    )  # fmt: skip
