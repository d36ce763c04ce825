"""Models, the training loop and the timer the benchmarks in this folder share.

Timing drains the device before and after the timed call; on CUDA it reads the time between two CUDA
events recorded on the current stream (the GPU's own clock, not the host's launch time).
"""

from __future__ import annotations

import contextlib
import resource
import sys
import time
from collections.abc import Callable

import torch
from torch import nn

from optprobe.probe import Probe

Batch = tuple[torch.Tensor, torch.Tensor]


def make_model(name: str, batch_size: int | None = None) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """The model and one batch (inputs, labels) of the benchmark ``name`` (batch size: its default)."""
    if name == "mlp":  # benchmarks/overhead.py's MLP, 1.86M parameters
        model = nn.Sequential(
            nn.Linear(784, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 10)
        )
        return model, *_batch((784,), batch_size or 256)
    if name == "cnn":  # benchmarks/overhead.py's small CNN, 1.1M parameters
        model = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * 8 * 8, 256), nn.ReLU(), nn.Linear(256, 10),
        )  # fmt: skip
        return model, *_batch((3, 32, 32), batch_size or 64)
    if name == "mlp-1.3m":  # issue 19's MLP 784-1024-512-10, 1.33M parameters
        model = nn.Sequential(
            nn.Linear(784, 1024), nn.ReLU(), nn.Linear(1024, 512), nn.ReLU(), nn.Linear(512, 10)
        )
        return model, *_batch((784,), batch_size or 128)
    if name == "3c3d":  # DeepOBS's CIFAR-10 3C3D (Cockpit's benchmark CNN), 0.90M parameters
        return three_c_three_d(), *_batch((3, 32, 32), batch_size or 128)
    if name == "tiny":  # for warming up code paths in a fresh process; 784 x 168 ≥ a CPU chunk (compiled)
        model = nn.Sequential(nn.Linear(784, 168), nn.ReLU(), nn.Linear(168, 10))
        return model, *_batch((784,), batch_size or 4)
    raise SystemExit(f"unknown model {name!r}; choose mlp, cnn, mlp-1.3m, 3c3d or tiny")


def three_c_three_d() -> nn.Module:
    """DeepOBS's cifar10_3c3d: three conv + max-pool blocks, three dense layers (TF "same" pooling)."""

    def pool() -> list[nn.Module]:  # 3x3 max-pool, stride 2, padded bottom/right as TensorFlow's "same"
        return [nn.ZeroPad2d((0, 1, 0, 1)), nn.MaxPool2d(3, stride=2)]  # inputs are ≥ 0 (after ReLU)

    return nn.Sequential(
        nn.Conv2d(3, 64, 5), nn.ReLU(), *pool(),
        nn.Conv2d(64, 96, 3), nn.ReLU(), *pool(),
        nn.Conv2d(96, 128, 3, padding=1), nn.ReLU(), *pool(),
        nn.Flatten(), nn.Linear(3 * 3 * 128, 512), nn.ReLU(),
        nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, 10),
    )  # fmt: skip


def _batch(shape: tuple[int, ...], n: int) -> Batch:
    return torch.randn(n, *shape), torch.randint(0, 10, (n,))


def loss_fn(model: nn.Module, batch: Batch) -> torch.Tensor:
    """Mean cross-entropy of the model on the batch."""
    return nn.functional.cross_entropy(model(batch[0]), batch[1])


def placed(model_name: str, device: str, seed: int) -> tuple[nn.Module, Batch]:
    """The model and its batch, seeded and on ``device``."""
    torch.manual_seed(seed)
    model, x, y = make_model(model_name)
    return model.to(device), (x.to(device), y.to(device))


def train_steps(
    model: nn.Module, batch: Batch, opt: torch.optim.Optimizer, probe: Probe | None, steps: int
) -> None:
    """The plain training loop, with the probe's two calls when there is a probe."""
    for _ in range(steps):
        if probe is not None:
            probe.begin_step(batch)
        opt.zero_grad()
        loss = loss_fn(model, batch)
        loss.backward()
        if probe is not None:
            probe.end_step(loss)
        opt.step()


def timed(fn: Callable[[], object], device: str) -> float:
    """Seconds fn() takes: wall time on a CPU; on CUDA the time between events around it on the stream."""
    sync(device)
    if device.startswith("cuda"):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3
    begin = time.perf_counter()
    fn()
    return time.perf_counter() - begin


def sync(device: str) -> None:
    """Wait for the device's queued work (nothing to wait for on a CPU)."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def reset_peak_memory(device: str) -> None:
    """Start :func:`peak_memory` afresh from what is in use now (Linux: VmHWM := VmRSS; CUDA: torch's)."""
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        return
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")  # resets this process's peak resident set size (Linux ≥ 4.0)
    except OSError as error:
        print(f"peak RSS not reset ({error}): it includes the warm-up", file=sys.stderr)


def peak_memory(device: str) -> float:
    """Peak memory of this process so far, bytes: resident set size on a CPU, allocated tensors on CUDA.

    On Linux the peak RSS is VmHWM, the high-water mark of this program's own address space.
    ``getrusage``'s ru_maxrss is not: it survives fork and exec, so a child started from a larger parent
    reports the parent's resident size at the fork (every child of a big parent then shows the same peak).
    """
    if device.startswith("cuda"):
        return float(torch.cuda.max_memory_allocated())
    with contextlib.suppress(OSError), open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return float(line.split()[1]) * 1024
    unit = 1 if sys.platform == "darwin" else 1024  # no /proc: ru_maxrss, bytes on macOS, KiB elsewhere
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * unit)
