"""Probe overhead next to plain training, measured side by side in one run.

Prints, for an MLP and a small CNN, the wall-time ratio probe/plain for
  (a) the full trajectory set every step, (b) gaps only, (c) the full set every 10 steps,
  and (a), (b) again with ``ProbeConfig(compile_reductions=True)`` ("compiled"),
(memory is measured by benchmarks/memory.py, on a model large enough for it to show).

Modes are interleaved round by round and each ratio is a median over rounds, so drifting machine
load affects plain and probed runs alike. Targets (issue 2): (a) ≤ 2.1×, (b) ≤ 1.45×, (c) ≤ 1.15×.

Each ratio is split into the floor set by the model, 1 + (the extra passes the metrics need: a
forward+backward for (a), a forward for (b), one in ten of those for (c)) / (a plain step), with both pass
times measured in the same rounds, and the rest: what the probe adds on top (snapshot, reductions, rows).

    python benchmarks/overhead.py [--steps 30] [--rounds 5] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from dataclasses import replace

import torch
from _common import loss_fn, make_model, placed, timed, train_steps  # shared by the benchmarks here

from optprobe.probe import Probe, ProbeConfig

__all__ = ["loss_fn", "make_model", "placed", "run_passes", "run_steps", "timed", "train_steps"]

EAGER = {
    "plain": None,
    "(a) full set, every step": ProbeConfig(),
    "(b) gaps only, every step": ProbeConfig(metrics=("convexity",)),
    "(c) full set, every 10 steps": ProbeConfig(every=10),
}
COMPILED = " compiled"  # (a) and (b) again with ProbeConfig(compile_reductions=True)
COMPILED_MODES = ("(a) full set, every step", "(b) gaps only, every step")
MODES = {**EAGER, **{m + COMPILED: replace(EAGER[m], compile_reductions=True) for m in COMPILED_MODES}}
# the passes each mode adds to a step (per step: "forward", "forward+backward"), and how often
EXTRA_PASSES = {
    "(a) full set, every step": ("forward+backward", 1.0),
    "(b) gaps only, every step": ("forward", 1.0),
    "(c) full set, every 10 steps": ("forward+backward", 0.1),
}
PASSES = ("forward", "forward+backward")
TARGETS = {
    "(a) full set, every step": 2.1,
    "(b) gaps only, every step": 1.45,
    "(c) full set, every 10 steps": 1.15,
}


def run_steps(model_name: str, mode: str, steps: int, device: str, seed: int = 0) -> float:
    """Seconds for ``steps`` training steps of ``model_name`` under ``mode``."""
    model, batch = placed(model_name, device, seed)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    config = MODES[mode]
    with tempfile.TemporaryDirectory() as tmp:
        probe = None if config is None else Probe(model, loss_fn, optimizer=opt, config=config, out_dir=tmp)
        elapsed = timed(lambda: train_steps(model, batch, opt, probe, steps), device)
        if probe is not None:
            probe.close()
    return elapsed


def run_passes(model_name: str, passes: str, steps: int, device: str, seed: int = 0) -> float:
    """Seconds for ``steps`` bare passes ("forward" without a graph, or "forward+backward") of the model."""
    model, batch = placed(model_name, device, seed)

    def bare_passes() -> None:
        for _ in range(steps):
            if passes == "forward":
                with torch.no_grad():
                    loss_fn(model, batch)
            else:
                model.zero_grad()
                loss_fn(model, batch).backward()

    return timed(bare_passes, device)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=["mlp", "cnn"])
    parser.add_argument("--steps", type=int, default=30, help="steps per timed block")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds; ratios are medians")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    print(
        f"device {args.device}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{args.steps} steps x {args.rounds} rounds"
    )
    for name in args.models:
        n_params = sum(p.numel() for p in make_model(name)[0].parameters())
        for mode in MODES:  # warm-up: allocator, kernels, first-call overheads
            run_steps(name, mode, 3, args.device)
        times: dict[str, list[float]] = {m: [] for m in [*MODES, *PASSES]}
        for r in range(args.rounds):
            for mode in MODES:
                times[mode].append(run_steps(name, mode, args.steps, args.device, seed=r))
            for passes in PASSES:
                times[passes].append(run_passes(name, passes, args.steps, args.device, seed=r))
        plain = statistics.median(times["plain"])
        ratio = {
            m: statistics.median(t / p for t, p in zip(ts, times["plain"], strict=True))
            for m, ts in times.items()
        }
        print(f"\n{name}: {n_params / 1e6:.2f}M parameters, plain step {1e3 * plain / args.steps:.2f} ms")
        print("  " + ", ".join(f"{passes} = {ratio[passes]:.2f} of a step" for passes in PASSES))
        for mode in list(MODES)[1:]:
            passes, per_step = EXTRA_PASSES[mode.removesuffix(COMPILED)]
            target = TARGETS[mode.removesuffix(COMPILED)]
            total, floor = ratio[mode], 1 + per_step * ratio[passes]
            verdict = "ok" if total <= target else "ABOVE TARGET"
            print(
                f"  {mode:<39} time x{total:5.2f}  (target <= {target}, {verdict}) "
                f"= floor {floor:.2f} from the extra {passes} + {total - floor:+.2f} probe",
                flush=True,
            )


if __name__ == "__main__":
    main()
