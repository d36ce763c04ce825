"""Probe memory overhead on a ~50M-parameter model, in units of one parameter copy.

Each configuration trains a few steps in a fresh subprocess and reports its peak memory (peak RSS on
CPU, peak allocated on CUDA), its ratio to plain training, and the overhead of the probe,
(peak with probe − peak without) / bytes of one parameter copy. Target (issues 2 and 7): ≤ 2 copies
(x_{t−1} and ∇ℓ(x_{t−1}, z_t)).

    python benchmarks/memory.py [--width 2048] [--depth 12] [--device cpu]

Beyond the two copies the probe holds only a few MiB of reusable buffers and the activations of its
extra forward pass; `--width 4096 --depth 4` checks a model made of a few very large tensors.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

import torch
from _common import loss_fn, peak_memory, reset_peak_memory, train_steps  # overhead.py's loop
from torch import nn

from optprobe.probe import Probe, ProbeConfig

CONFIGS = {
    "plain": None,
    "full trajectory set": ProbeConfig(),
    "gaps only": ProbeConfig(metrics=("convexity",)),
    "full set, compiled": ProbeConfig(compile_reductions=True),
    "gaps only, compiled": ProbeConfig(metrics=("convexity",), compile_reductions=True),
}


def build(width: int, depth: int) -> nn.Module:
    layers: list[nn.Module] = [nn.Linear(784, width), nn.ReLU()]
    for _ in range(depth - 1):
        layers += [nn.Linear(width, width), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(width, 10))


def warm_up(device: str) -> None:
    """Probe two steps of a small model under every configuration, so each child has imported, initialised
    and compiled the same code, then reset the peak: what is measured is the training that follows.

    Attaching the first probe loads torch.func and its dependencies once per process (a few MiB,
    independent of model size); compiling a reduction kernel takes far more, for a moment. Neither is a
    per-parameter cost. The model has a tensor of a CPU chunk (784 x 168), which compiled kernels reduce.
    """
    model = build(168, 1).to(device)
    batch = (torch.randn(4, 784, device=device), torch.randint(0, 10, (4,), device=device))
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    for config in CONFIGS.values():
        with tempfile.TemporaryDirectory() as out:
            probe = None
            if config is not None:
                probe = Probe(model, loss_fn, optimizer=opt, config=config, out_dir=out)
            train_steps(model, batch, opt, probe, 2)
            if probe is not None:
                probe.close()
    reset_peak_memory(device)


def measure(config_name: str, width: int, depth: int, device: str, steps: int = 4) -> float:
    """Train ``steps`` steps under ``config_name`` in this process; return its peak memory in bytes."""
    warm_up(device)
    torch.manual_seed(0)
    model = build(width, depth).to(device)
    batch = (torch.randn(64, 784, device=device), torch.randint(0, 10, (64,), device=device))
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    config = CONFIGS[config_name]
    with tempfile.TemporaryDirectory() as tmp:
        probe = None if config is None else Probe(model, loss_fn, optimizer=opt, config=config, out_dir=tmp)
        train_steps(model, batch, opt, probe, steps)
        peak = peak_memory(device)  # before close(): writing the table's parquet copy is not training
        if probe is not None:
            probe.close()
    return peak


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--depth", type=int, default=12)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.width, args.depth, args.device)))
        return
    n_params = sum(p.numel() for p in build(args.width, args.depth).parameters())
    copy_bytes = 4 * n_params
    print(f"model: {n_params / 1e6:.1f}M parameters ({copy_bytes / 2**20:.0f} MiB per copy), {args.device}")
    # glibc keeps freed heap chunks mapped; serving every allocation over 1 MiB by mmap makes peak RSS
    # follow live memory instead of the allocator's fragmentation (the same for every configuration)
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(2**20)}
    peaks = {}
    for name in CONFIGS:
        size = ["--width", str(args.width), "--depth", str(args.depth), "--device", args.device]
        cmd = [sys.executable, __file__, "--child", name, *size]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
        peaks[name] = float(out.stdout.strip().splitlines()[-1])
    for name, peak in peaks.items():
        extra = (peak - peaks["plain"]) / copy_bytes
        ratio = peak / peaks["plain"]
        note = f"  ratio x{ratio:.2f}, probe overhead {extra:+.2f} parameter copies (target <= 2)"
        note = "" if name == "plain" else note
        print(f"  {name:<20} peak {peak / 2**20:8.0f} MiB{note}")


if __name__ == "__main__":
    main()
