"""What measuring costs, optprobe beside its peers: time per step and peak memory, relative to plain SGD.

Contenders, each training the same model on the same batch with SGD (lr 0.01, no momentum: Cockpit's
α quantity needs SGD's default arguments):

* plain: zero_grad, forward, backward, step;
* floor +1 forward / +1 forward+backward: plain plus one bare extra pass of the model, the least any
  tool that evaluates the loss (gradient) at a second point must add (the gaps-only set needs one
  forward, the full set one forward+backward, each at x_{t−1});
* floor +1 forward / +1 forward+backward, reading once: the same plus one read of every parameter-sized
  tensor the set's reduction pass reads (g_t, x_t, x_{t−1}; for the full set also a held tensor standing
  for ∇ℓ(x_{t−1})) and the copy of x_t it keeps for the next step: the least any implementation that
  holds x_{t−1} must add on top of the extra pass, i.e. where memory traffic, not code, sets the cost;
* optprobe gaps only / full set / full set + x* (an x* adds the same passes at x*), each also with
  ``ProbeConfig(compile_reductions=True)`` (", compiled": one compiled kernel per large tensor);
* the seed authors' loop: a re-implementation of the per-step measurement in Submission14212's
  ``ImageClassification/Cifar10/train.py`` (see :class:`AuthorsLoop` for the lines it follows);
* Cockpit economy / business (``pip install cockpit-for-pytorch``, see the ``peers`` extra), skipped with
  the reason printed when it does not import.

Time: contenders are interleaved round by round in an order rotated each round, each ratio is taken
against plain in the same round, and the table gives its median and [min–max] over rounds. Memory:
each contender trains a few steps in a fresh process, after the same warm-up (two steps of every
contender on a tiny model, so one-time imports, initialisation and compiled kernels are paid alike, then
the peak is reset), and reports its peak (peak RSS on a CPU, peak allocated on CUDA); the table gives
(peak − plain's peak) / bytes of one parameter copy, median and [min–max] over ``--memory-runs``
processes each. The floors measured the same way are the extra passes'
own activations; "own" subtracts the floor a contender's passes set from its memory.

    python benchmarks/peers.py [--models mlp-1.3m 3c3d] [--rounds 7] [--steps 10] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import replace

import torch
from _common import Batch, loss_fn, make_model, peak_memory, placed, reset_peak_memory, timed, train_steps
from torch import nn

from optprobe.probe import Probe, ProbeConfig

EAGER = {
    "optprobe gaps only": (ProbeConfig(metrics=("convexity",)), False),
    "optprobe full set": (ProbeConfig(), False),
    "optprobe full set + x*": (ProbeConfig(), True),
}
COMPILED = ", compiled"  # each again with ProbeConfig(compile_reductions=True)
OPTPROBE = {
    **EAGER,
    **{name + COMPILED: (replace(cfg, compile_reductions=True), ref) for name, (cfg, ref) in EAGER.items()},
}
COCKPIT = {"Cockpit economy": "economy", "Cockpit business": "business"}
READ_ONCE = ", reading once"  # a floor plus one read of the reduction pass's sources and the snapshot copy
PASSES = ("floor +1 forward", "floor +1 forward+backward")
CONTENDERS = (
    "plain", *PASSES, *(name + READ_ONCE for name in PASSES), *OPTPROBE, "authors' loop", *COCKPIT,
)  # fmt: skip
# the floor each contender's extra passes set: (floor contender, how many of its extra passes)
FLOORS = {
    "optprobe gaps only": ("floor +1 forward", 1),
    "optprobe full set": ("floor +1 forward+backward", 1),
    "optprobe full set + x*": ("floor +1 forward+backward", 2),
    "authors' loop": ("floor +1 forward+backward", 1),
}
FLOORS.update({name + COMPILED: FLOORS[name] for name in EAGER})
# the memory-traffic floor of the sets measured at x_{t−1} only (an x* adds reads of its own)
READ_FLOORS = {name: FLOORS[name][0] + READ_ONCE for name, (_, with_ref) in OPTPROBE.items() if not with_ref}


class Contender:
    """One way of training with (or without) measurements; ``run(steps)`` trains ``steps`` steps."""

    def __init__(self, name: str, model_name: str, device: str, seed: int = 0) -> None:
        self.name = name
        self.model, self.batch = placed(model_name, device, seed)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=0.01)
        self._stack = contextlib.ExitStack()
        self.probe: Probe | None = None
        self.authors: AuthorsLoop | None = None
        self.cockpit: CockpitLoop | None = None
        self.read_once: list[list[torch.Tensor]] = []  # (x_{t−1}[, ∇ℓ(x_{t−1}) stand-in]) for READ_ONCE
        self.with_backward = name.startswith(PASSES[1])  # a floor with an extra forward+backward
        if name.endswith(READ_ONCE):
            params = [p.detach() for p in self.model.parameters()]
            self.read_once.append([p.clone() for p in params])
            if self.with_backward:
                self.read_once.append([torch.randn_like(p) for p in params])
        if name in OPTPROBE:
            config, with_ref = OPTPROBE[name]
            reference = placed(model_name, device, seed + 1)[0] if with_ref else None
            out_dir = self._stack.enter_context(tempfile.TemporaryDirectory())
            self.probe = Probe(
                self.model, loss_fn, optimizer=self.opt, config=config, reference=reference, out_dir=out_dir
            )
            self._stack.callback(self.probe.close)
        elif name == "authors' loop":
            self.authors = AuthorsLoop(self.model, self.opt)
        elif name in COCKPIT:
            self.cockpit = CockpitLoop(self.model, self.opt, COCKPIT[name])

    def run(self, steps: int) -> None:
        if self.authors is not None:
            for _ in range(steps):
                self.authors.step(self.batch)
        elif self.cockpit is not None:
            for _ in range(steps):
                self.cockpit.step(self.batch)
        elif self.name.startswith("floor"):
            for _ in range(steps):
                self._floor_step()
        else:
            train_steps(self.model, self.batch, self.opt, self.probe, steps)

    def _floor_step(self) -> None:
        """A plain step plus the bare extra pass, where the probe makes it (gradient held, before the update).

        The extra backward accumulates into ``.grad`` before ``zero_grad`` discards it, so it allocates no
        gradient of its own (a probe streams and drops its extra gradient, tensor by tensor).
        """
        if self.with_backward:
            loss_fn(self.model, self.batch).backward()
        self.opt.zero_grad()
        loss_fn(self.model, self.batch).backward()
        if not self.with_backward:
            with torch.no_grad():
                loss_fn(self.model, self.batch)
        if self.read_once:
            self._read_once()
        self.opt.step()

    def _read_once(self) -> None:
        """One read of g_t, x_t and the held tensors (a sum each), then x_t copied into the held x_{t−1}."""
        params = [p.detach() for p in self.model.parameters()]
        with torch.no_grad():
            for tensors in ([p.grad for p in self.model.parameters()], params, *self.read_once):
                for t in tensors:
                    t.sum()
            torch._foreach_copy_(self.read_once[0], params)

    def close(self) -> None:
        self._stack.close()


class AuthorsLoop:
    """The per-step measurement of Submission14212's CIFAR-10 loop, re-implemented operation by operation.

    Follows ``ImageClassification/Cifar10/train.py`` (commit ed18e2b) ``train_step``: the seven
    parameter-shaped buffers of lines 39-49; per step the extra forward+backward at w_t on the previous
    batch with its ``.item()`` (lines 64-69), the copies of ∇f(w_t, x_{t−1}) and w_t (70-76), the training
    forward+backward (79-81) and the copy of its gradient (82-86); from the second step on the statistics
    of lines 87-111 (a new difference list Δ_t, ‖Δ_t‖², ⟨Δ_t, Δ_{t−1}⟩ and three ⟨∇, w_t − w_{t−1}⟩, each
    with one ``.item()`` per tensor; the smoothness ratio as sums of per-tensor norms, compared on the host);
    then the copies of lines 113-118, the update (119) and ``loss.item()`` (120). The helpers are those of
    ``ImageClassification/Cifar10/properties_checker.py``: compute_linear_approx (lines 5-15),
    compute_smoothness (17-23), compute_L2_norm (26-31), compute_inner_product (45-49) and
    compute_difference (64-68). Left out: lines 124-130, the loop's own accuracy bookkeeping, which a
    plain training loop does as well. Here the previous batch is the same batch, as every contender
    trains on one batch (the cost of a pass does not depend on which batch it reads).
    """

    def __init__(self, model: nn.Module, opt: torch.optim.Optimizer) -> None:
        self.model, self.opt = model, opt
        params = list(model.parameters())

        def zeros() -> list[torch.Tensor]:
            return [torch.zeros_like(p) for p in params]

        self.prev_update, self.dif = zeros(), zeros()
        self.prev_grad, self.prev_param = zeros(), zeros()
        self.current_grad_l, self.current_grad_linear, self.current_param = zeros(), zeros(), zeros()
        self.t = 0
        self.gap = float("nan")  # line 108's current_convexity_gap, the last one
        self.prev_loss = self.sum_dif = self.denom = self.num = self.num_actual = self.gap_sum = 0.0
        self.lipschitz: float | torch.Tensor = 0.0
        self.ema_l = [0.0, 0.0]
        self.ema_gap = [0.0, 0.0]

    def step(self, batch: Batch) -> None:
        params = list(self.model.parameters())
        prev_batch_loss = loss_fn(self.model, batch)  # f(w_t, x_{t-1}): batch t-1 is this batch here
        current_loss = prev_batch_loss.item()
        prev_batch_loss.backward()
        with torch.no_grad():
            for i, p in enumerate(params):
                self.current_grad_l[i].copy_(p.grad)
                self.current_param[i].copy_(p)
        self.opt.zero_grad()
        loss = loss_fn(self.model, batch)
        loss.backward()
        with torch.no_grad():
            for i, p in enumerate(params):
                self.current_grad_linear[i].copy_(p.grad)
        if self.t > 0:
            self._statistics(current_loss)
        with torch.no_grad():
            for i, p in enumerate(params):
                self.prev_grad[i].copy_(p.grad)
                self.prev_param[i].copy_(p)
        self.opt.step()
        self.prev_loss = loss.item()
        self.t += 1
        self.opt.zero_grad()

    def _statistics(self, current_loss: float) -> None:
        """Lines 87-111: the running sums, each ⟨·,·⟩ and norm tensor by tensor with a host read."""
        cp, pp = self.current_param, self.prev_param
        self.dif = [c - p for c, p in zip(cp, pp, strict=True)]
        self.sum_dif += _l2_norm(self.dif) ** 2
        _inner(self.dif, self.prev_update)
        self.prev_update = self.dif
        linear_approx_prev = _linear_approx(cp, self.current_grad_l, pp)
        _linear_approx(cp, self.current_grad_linear, pp)
        num = sum(torch.norm(g - h) for g, h in zip(self.current_grad_l, self.prev_grad, strict=True))
        den = sum(torch.norm(c - p) for c, p in zip(cp, pp, strict=True))
        current_l = num / den  # a tensor, as in the original; max() below compares it on the host
        self.lipschitz = max(self.lipschitz, current_l)
        self.denom += current_loss - self.prev_loss
        self.ema_l = [b * e + (1 - b) * current_l for b, e in zip((0.99, 0.9999), self.ema_l, strict=True)]
        self.num_actual += _linear_approx(cp, self.current_grad_linear, pp)
        self.num += linear_approx_prev
        gap = self.gap = current_loss - self.prev_loss - linear_approx_prev
        self.ema_gap = [b * e + (1 - b) * gap for b, e in zip((0.99, 0.9999), self.ema_gap, strict=True)]
        self.gap_sum += gap


def _linear_approx(param: list[torch.Tensor], grad: list[torch.Tensor], prev: list[torch.Tensor]) -> float:
    """Σ_i ⟨grad_i, param_i − prev_i⟩, one dot and one host read per tensor (properties_checker.py 5-15)."""
    triples = zip(grad, param, prev, strict=True)
    return sum(torch.dot(g.flatten(), p.add(-q).flatten()).item() for g, p, q in triples)


def _inner(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    """Σ_i ⟨a_i, b_i⟩, one host read per tensor (properties_checker.py 45-49)."""
    return sum(torch.dot(x.flatten(), y.flatten()).item() for x, y in zip(a, b, strict=True))


def _l2_norm(tensors: list[torch.Tensor]) -> float:
    """(Σ_i ‖t_i‖²)^½ from per-tensor norms read to the host (properties_checker.py 26-31)."""
    return sum(t.norm(2).item() ** 2 for t in tensors) ** 0.5


class CockpitLoop:
    """Cockpit's documented training loop: BackPACK-extended model and loss, quantities every step."""

    def __init__(self, model: nn.Module, opt: torch.optim.Optimizer, label: str) -> None:
        cockpit, configuration, extend = import_cockpit()
        self.model, self.opt = extend(model), opt
        self.loss = extend(nn.CrossEntropyLoss())
        self.individual = nn.CrossEntropyLoss(reduction="none")
        self.cockpit = cockpit(model.parameters(), quantities=configuration(label))
        self.t = 0

    def step(self, batch: Batch) -> None:
        inputs, labels = batch
        self.opt.zero_grad()
        outputs = self.model(inputs)
        loss = self.loss(outputs, labels)
        losses = self.individual(outputs, labels)
        info = {"batch_size": len(labels), "individual_losses": losses, "loss": loss, "optimizer": self.opt}
        with self.cockpit(self.t, info=info):
            loss.backward(create_graph=self.cockpit.create_graph(self.t))
        self.opt.step()
        self.t += 1


def import_cockpit() -> tuple[type, Callable, Callable]:
    """(Cockpit, configuration, backpack.extend); raises ImportError with the reason when unavailable.

    cockpit-for-pytorch 1.0.2 imports ``pkg_resources`` only to read its own version; setuptools ≥ 81 no
    longer ships that module, so a stand-in that reports "unknown" is put in its place when it is missing.
    """
    try:
        import pkg_resources  # noqa: F401
    except ImportError:
        import types

        stand_in = types.ModuleType("pkg_resources")

        class DistributionNotFound(Exception):
            pass

        def get_distribution(name: str) -> None:
            raise DistributionNotFound(name)

        stand_in.DistributionNotFound = DistributionNotFound  # type: ignore[attr-defined]
        stand_in.get_distribution = get_distribution  # type: ignore[attr-defined]
        sys.modules["pkg_resources"] = stand_in
    from backpack import extend
    from cockpit import Cockpit
    from cockpit.utils.configuration import configuration

    return Cockpit, configuration, extend


def available(names: list[str]) -> list[str]:
    """The contenders that can run here; prints why Cockpit's are skipped when they are."""
    if not any(name in COCKPIT for name in names):
        return names
    try:
        import_cockpit()
    except Exception as error:  # noqa: BLE001 - any failure to import means: skip, and say why
        reason = f"{type(error).__name__}: {error}"
        print(f"skipping Cockpit: {reason} (pip install --no-deps cockpit-for-pytorch json-tricks)")
        return [name for name in names if name not in COCKPIT]
    return names


def time_round(
    names: list[str], model_name: str, device: str, steps: dict[str, int], r: int
) -> dict[str, float]:
    """Seconds per step of each contender in round ``r`` (order rotated by r), after two untimed steps."""
    order = names[r % len(names) :] + names[: r % len(names)]
    per_step = {}
    for name in order:
        contender = Contender(name, model_name, device, seed=r)
        contender.run(2)  # the first step measures nothing (no x_{t−1} yet); the second warms caches
        per_step[name] = timed(lambda c=contender, n=steps[name]: c.run(n), device) / steps[name]
        contender.close()
    return per_step


def measure_memory(
    name: str, model_name: str, device: str, names: list[str], steps: int = 4
) -> dict[str, float]:
    """Peak memory of ``steps`` steps of ``name`` in this (fresh) process, after every contender's warm-up:
    {"peak RSS": bytes, "live tensors": bytes} (see :func:`live_tensor_peak`).

    The warm-up (two steps of every contender on the tiny model) pays one-time costs alike in every
    process: imports, initialisation, compiled kernels (the tiny model has a tensor of a CPU chunk); the
    peak is then reset, so it counts the measured steps, not a compiler's working memory.
    """
    for other in names:
        tiny = Contender(other, "tiny", device)
        tiny.run(2)
        tiny.close()
    reset_peak_memory(device)
    contender = Contender(name, model_name, device)
    contender.run(steps)
    peak = peak_memory(device)
    contender.close()
    del contender
    return {"peak RSS": peak, "live tensors": live_tensor_peak(name, model_name, device, steps)}


def live_tensor_peak(name: str, model_name: str, device: str, steps: int) -> float:
    """The most bytes held in tensors at once while ``name`` is built and trains ``steps`` steps.

    torch's allocator counts every tensor's allocation and free: on CUDA its peak counter, on a CPU the
    profiler's memory events ("Total Allocated"). Unlike peak RSS this does not depend on how the C
    allocator reuses freed memory, so it is the same in every run.
    """
    if device.startswith("cuda"):
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        _train_and_free(name, model_name, device, steps)
        return torch.cuda.max_memory_allocated() - before
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        _train_and_free(name, model_name, device, steps)
    with tempfile.TemporaryDirectory() as tmp:
        prof.export_chrome_trace(f"{tmp}/trace.json")
        with open(f"{tmp}/trace.json") as trace:
            events = [e["args"] for e in json.load(trace)["traceEvents"] if e.get("name") == "[memory]"]
    allocated = [e["Total Allocated"] for e in events if e.get("Device Type") == 0]  # 0: the CPU
    first = next(e for e in events if e.get("Device Type") == 0)
    return max(allocated) - (first["Total Allocated"] - first["Bytes"])  # above what was held before


def _train_and_free(name: str, model_name: str, device: str, steps: int) -> None:
    contender = Contender(name, model_name, device)
    contender.run(steps)
    contender.close()


MemoryTable = dict[str, dict[str, list[float]]]  # kind ("peak RSS", "live tensors") → contender → copies


def memory_table(args: argparse.Namespace, names: list[str], model_name: str) -> MemoryTable:
    """Peak memory above plain, parameter copies, per kind and contender: one fresh process per run and
    contender."""
    copy_bytes = 4 * sum(p.numel() for p in make_model(model_name)[0].parameters())
    # glibc keeps freed heap chunks mapped; serving allocations over 1 MiB by mmap makes peak RSS follow
    # live memory rather than fragmentation (the same setting for every contender, as benchmarks/memory.py)
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(2**20), "OMP_NUM_THREADS": str(args.threads)}
    copies: MemoryTable = {kind: {name: [] for name in names} for kind in ("peak RSS", "live tensors")}
    for _ in range(args.memory_runs):
        peaks = {}
        for name in names:
            cmd = [sys.executable, __file__, "--child", name, "--models", model_name, "--device", args.device]
            cmd += ["--threads", str(args.threads), "--only", *names]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
            peaks[name] = json.loads(out.stdout.strip().splitlines()[-1])
        for kind, by_name in copies.items():
            for name in names:
                by_name[name].append((peaks[name][kind] - peaks["plain"][kind]) / copy_bytes)
    return copies


def spread(values: list[float]) -> str:
    """'median [min–max]' of ``values`` (the median alone for one value)."""
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.median(values):.2f} [{min(values):.2f}–{max(values):.2f}]"


def report(model_name: str, times: dict[str, list[float]], memory: MemoryTable | None) -> None:
    """Print one model's tables: ratio to plain (and what it adds beyond its floor); memory above plain."""
    n_params = sum(p.numel() for p in make_model(model_name)[0].parameters())
    median = statistics.median(times["plain"]) if times else math.nan
    plain = f"plain step {1e3 * median:.1f} ms (median)" if times else "no timing"
    print(f"\n{model_name}: {n_params / 1e6:.2f}M parameters, {plain}")
    ratios = {name: [t / p for t, p in zip(ts, times["plain"], strict=True)] for name, ts in times.items()}
    if ratios:
        print(f"  {'contender':<41} time / plain step")
    for name in ratios:
        cell = _time_cell(name, ratios, FLOORS.get(name))
        if READ_FLOORS.get(name) in ratios:
            cell += f", beyond reading once {_beyond(name, ratios, READ_FLOORS[name]):+.2f}"
        print(f"  {name:<41} {cell}", flush=True)
    if memory is None:
        return
    print(f"  {'memory above plain, parameter copies':<41} " + "".join(f"{kind:<40}" for kind in memory))
    for name in memory["peak RSS"]:
        cells = [_memory_cell(by_name, FLOORS.get(name), name) for by_name in memory.values()]
        print(f"  {name:<41} " + "".join(f"{cell:<40}" for cell in cells), flush=True)


def _memory_cell(by_name: dict[str, list[float]], floor: tuple[str, int] | None, name: str) -> str:
    """'median [min–max]', and what is left beyond the floor's memory (its extra passes' activations)."""
    cell = spread(by_name[name])
    if floor is not None and floor[0] in by_name:
        own = [m - f for m, f in zip(by_name[name], by_name[floor[0]], strict=True)]
        cell += f"; own {spread(own)}"
    return cell


def _time_cell(name: str, ratios: dict[str, list[float]], floor: tuple[str, int] | None) -> str:
    """'median [min–max]', and 'floor F +x' (x: the median beyond the floor its extra passes set)."""
    if name not in ratios:
        return ""
    cell = spread(ratios[name])
    if floor is not None and floor[0] in ratios:
        floor_ratio = 1 + floor[1] * (statistics.median(ratios[floor[0]]) - 1)
        cell += f" floor {floor_ratio:.2f} {statistics.median(ratios[name]) - floor_ratio:+.2f}"
    return cell


def _beyond(name: str, ratios: dict[str, list[float]], floor: str) -> float:
    """The median of ``name``'s ratio minus the median of ``floor``'s."""
    return statistics.median(ratios[name]) - statistics.median(ratios[floor])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=["mlp-1.3m", "3c3d"])
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds; ratios are medians")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per contender and round")
    parser.add_argument("--peer-steps", type=int, default=2, help="timed steps of Cockpit's (slow) loops")
    parser.add_argument("--memory-runs", type=int, default=2, help="fresh processes per contender (0: none)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the table's: 1)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--only", nargs="+", default=list(CONTENDERS), help="contenders (plain always runs)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    names = available(["plain", *[n for n in CONTENDERS if n in args.only and n != "plain"]])
    if args.child:
        print(json.dumps(measure_memory(args.child, args.models[0], args.device, names)))
        return
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"device {args.device}, torch {torch.__version__}, {args.threads} thread(s), {args.rounds} rounds of "
        f"{args.steps} steps (Cockpit {args.peer_steps}), load average {load:.1f} on {os.cpu_count()} CPUs"
    )
    steps = {name: args.peer_steps if name in COCKPIT else args.steps for name in names}
    for model_name in args.models:
        for name in names if args.rounds > 0 else ():  # warm-up: allocator, kernels, first-call overheads
            Contender(name, model_name, args.device).run(2)
        times: dict[str, list[float]] = {name: [] for name in names} if args.rounds > 0 else {}
        for r in range(args.rounds):
            for name, seconds in time_round(names, model_name, args.device, steps, r).items():
                times[name].append(seconds)
        memory = memory_table(args, names, model_name) if args.memory_runs > 0 else None
        report(model_name, times, memory)


if __name__ == "__main__":
    main()
