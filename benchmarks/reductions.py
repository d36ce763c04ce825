"""The probe's reduction pass on its own: time, and error against float64, on a model in training.

The overhead benchmark's MLP (1.86M parameters, float32) is trained with SGD + momentum on its fixed batch;
at ``--steps`` measured steps the pass reduces the real g_t, x_t, x_{t−1} and ∇ℓ(x_{t−1}, z_t) (so Δ_t is
small beside x_t, as in training) to the five inner products, ‖g‖₁ and ‖g‖∞ the full set needs, per
layer. Each value is compared with the same quantity computed in float64 from the float64 sources; the
table gives the largest relative error over steps, per quantity, for the layer totals and for the
per-layer values. "compiled" is this checkout with ``compile_reductions`` (one compiled kernel per tensor
of at least an eighth of a chunk, float32 sums within rows of 4096 entries, the rows' sums in float64;
compiled before the timing). ``--compare-with`` loads another
checkout's ``optprobe/reductions.py`` beside this one (same inputs, timed in alternation, order rotated)
to compare the implementations; it may be given more than once. Times: median and [min–max] over
``--repeats``, with one plain read of the four sources (``sum`` of each) for scale.

    python benchmarks/reductions.py [--repeats 40] [--compare-with ../old/src/optprobe/reductions.py]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from types import ModuleType

import torch
from overhead import loss_fn, placed  # the same model and batch, side by side in this folder

import optprobe.reductions as current
from optprobe.evaluation import Evaluator
from optprobe.reductions import layer_of

DOTS = {("g", "dx_prev"), ("g", "g"), ("x", "x"), ("dx_prev", "dx_prev"), ("dg_prev", "dg_prev")}
Sources = dict[str, dict[str, torch.Tensor]]


def training_sources(steps: int, warmup: int = 5) -> list[Sources]:
    """(g, x, prev, prev_grad) at ``steps`` consecutive SGD steps after ``warmup`` steps of the MLP."""
    model, batch = placed("mlp", "cpu", seed=0)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    evaluator = Evaluator(model, loss_fn)
    out, prev = [], None
    for step in range(warmup + steps):
        opt.zero_grad()
        loss_fn(model, batch).backward()
        x = {n: p.detach().clone() for n, p in model.named_parameters()}
        if prev is not None and step >= warmup:
            _, prev_grad = evaluator.loss_and_grad(prev, batch)
            g = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
            out.append({"g": g, "x": x, "prev": prev, "prev_grad": prev_grad})
        opt.step()
        prev = x
    return out


def reference(sources: Sources, layers: dict[str, str]) -> dict[str, dict[str, float]]:
    """Every quantity per layer and in total ("total"), in float64 from float64 sources."""
    wide = {s: {n: t.double().reshape(-1) for n, t in d.items()} for s, d in sources.items()}
    vector = {
        "g": lambda n: wide["g"][n], "x": lambda n: wide["x"][n],
        "dx_prev": lambda n: wide["x"][n] - wide["prev"][n],
        "dg_prev": lambda n: wide["g"][n] - wide["prev_grad"][n],
    }  # fmt: skip
    quantities = {f"<{a},{b}>": lambda n, a=a, b=b: float(vector[a](n) @ vector[b](n)) for a, b in DOTS}
    quantities["|g|_1"] = lambda n: float(vector["g"](n).abs().sum())
    out: dict[str, dict[str, float]] = {}
    for name, per_tensor in quantities.items():
        per_layer: dict[str, float] = {}
        for tensor, layer in layers.items():
            per_layer[layer] = per_layer.get(layer, 0.0) + per_tensor(tensor)
        out[name] = {**per_layer, "total": sum(per_layer.values())}
    out["|g|_inf"] = {layer: 0.0 for layer in layers.values()}
    for tensor, layer in layers.items():
        out["|g|_inf"][layer] = max(out["|g|_inf"][layer], float(vector["g"](tensor).abs().max()))
    out["|g|_inf"]["total"] = max(out["|g|_inf"].values())
    return out


def reduced(module: ModuleType, sources: Sources, workspace: object) -> dict[str, dict[str, float]]:
    """The same quantities from ``module``'s Reduction (per layer and total)."""
    names = list(sources["g"])
    layers = [layer_of(n) for n in names]
    reduction = module.Reduction(sources, DOTS, {"g"}, {"g"}, workspace)
    for name in names:
        reduction.add(name, sources)
    dots, l1, linf = reduction.result(names, layers)
    unique = list(dict.fromkeys(layers))
    sums = {f"<{a},{b}>": dots[(a, b)] for a, b in DOTS} | {"|g|_1": l1["g"], "|g|_inf": linf["g"]}
    return {k: {**dict(zip(unique, s.per_layer, strict=True)), "total": s.total} for k, s in sums.items()}


def worst_errors(
    module: ModuleType, workspace: object, all_sources: list[Sources], refs: list[dict[str, dict[str, float]]]
) -> dict[str, tuple[float, float]]:
    """Per quantity: (largest relative error of the total, of any layer's value) over the steps."""
    worst: dict[str, tuple[float, float]] = {}
    for sources, ref in zip(all_sources, refs, strict=True):
        got = reduced(module, sources, workspace)
        for k, exact in ref.items():
            errors = {p: abs(got[k][p] - v) / abs(v) if v else abs(got[k][p]) for p, v in exact.items()}
            total = errors.pop("total")
            old = worst.get(k, (0.0, 0.0))
            worst[k] = (max(old[0], total), max(old[1], *errors.values()))
    return worst


def load(path: str, name: str) -> ModuleType:
    """Another checkout's reductions.py, as a module called ``name``."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--steps", type=int, default=5, help="measured training steps compared with float64")
    parser.add_argument(
        "--compare-with", action="append", default=[], help="another checkout's src/optprobe/reductions.py"
    )
    args = parser.parse_args()
    torch.manual_seed(0)
    all_sources = training_sources(args.steps)
    layers = {n: layer_of(n) for n in all_sources[0]["g"]}
    refs = [reference(s, layers) for s in all_sources]
    modules = {"this checkout": current, "compiled": current}
    for i, path in enumerate(args.compare_with):
        modules[f"compared {i + 1}"] = load(path, f"compared_{i}")
        print(f"compared {i + 1}: {path}")
    workspaces = {
        label: module.Workspace(compiled=True) if label == "compiled" else module.Workspace()
        for label, module in modules.items()
    }
    n = sum(t.numel() for t in all_sources[0]["g"].values())
    threads = torch.get_num_threads()
    print(f"{n / 1e6:.2f}M float32 entries per source, torch {torch.__version__}, {threads} threads")
    start = time.perf_counter()
    reduced(current, all_sources[0], workspaces["compiled"])
    print(f"compiled's first call (compiling its kernel): {time.perf_counter() - start:.1f} s")
    print("largest relative error vs float64 over", args.steps, "training steps: total / any layer")
    for label, module in modules.items():
        errors = worst_errors(module, workspaces[label], all_sources, refs)
        print(f"  {label:<14}" + ", ".join(f"{k} {t:.1e}/{p:.1e}" for k, (t, p) in sorted(errors.items())))
    sources = all_sources[-1]
    times: dict[str, list[float]] = {label: [] for label in modules}
    read = [torch.cat([t.reshape(-1) for t in d.values()]) for d in sources.values()]
    times["plain read"] = []
    order = list(modules.items())
    for r in range(args.repeats):  # alternated, order rotated (the one after another finds warmer caches)
        for label, module in order[r % len(order) :] + order[: r % len(order)]:
            start = time.perf_counter()
            reduced(module, sources, workspaces[label])
            times[label].append(time.perf_counter() - start)
        start = time.perf_counter()
        [v.sum() for v in read]
        times["plain read"].append(time.perf_counter() - start)
    print("reduction pass (5 dots, l1, linf, per layer), median [min–max] over", args.repeats, "repeats:")
    for label, ts in times.items():
        print(f"  {label:<14} {1e3 * statistics.median(ts):.2f} ms [{1e3 * min(ts):.2f}–{1e3 * max(ts):.2f}]")


if __name__ == "__main__":
    main()
