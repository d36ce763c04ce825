"""The probe's reduction pass on its own: time, and error against float64, for the full trajectory set.

Sources shaped like the overhead benchmark's MLP (1.86M parameters, float32): g_t, x_t, x_{t−1} and
∇ℓ(x_{t−1}); the pass computes the five inner products, ‖g‖₁ and ‖g‖∞ the full set needs, per layer. For
scale it also times one plain read of the four sources (``sum`` of each), the memory traffic the pass
cannot avoid. Times are minima over ``--repeats``.

    python benchmarks/reductions.py [--repeats 40]
"""

from __future__ import annotations

import argparse

import torch
from curvature import best_time  # minimum over repeats: the least noisy on a shared machine
from overhead import make_model  # the same model, side by side in this folder

from optprobe.reductions import Reduction, Workspace, layer_of

DOTS = {("g", "dx_prev"), ("g", "g"), ("x", "x"), ("dx_prev", "dx_prev"), ("dg_prev", "dg_prev")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=40)
    args = parser.parse_args()
    torch.manual_seed(0)
    shapes = {name: p.shape for name, p in make_model("mlp")[0].named_parameters()}
    sources = {
        s: {n: torch.randn(shape) for n, shape in shapes.items()} for s in ("g", "x", "prev", "prev_grad")
    }
    names, layers = list(shapes), [layer_of(n) for n in shapes]
    workspace = Workspace()

    def reduce() -> tuple:
        reduction = Reduction(sources, DOTS, {"g"}, {"g"}, workspace)
        for name in names:
            reduction.add(name, sources)
        return reduction.result(names, layers)

    flat = {s: torch.cat([t.double().reshape(-1) for t in d.values()]) for s, d in sources.items()}
    vectors = {"g": flat["g"], "x": flat["x"]}
    vectors.update(dx_prev=flat["x"] - flat["prev"], dg_prev=flat["g"] - flat["prev_grad"])
    dots, l1, linf = reduce()
    errors = {f"<{a},{b}>": abs(dots[(a, b)].total / float(vectors[a] @ vectors[b]) - 1) for a, b in DOTS}
    errors["|g|_1"] = abs(l1["g"].total / float(vectors["g"].abs().sum()) - 1)
    errors["|g|_inf"] = abs(linf["g"].total / float(vectors["g"].abs().max()) - 1)
    n = sum(t.numel() for t in sources["g"].values())
    threads = torch.get_num_threads()
    print(f"{n / 1e6:.2f}M float32 entries per source, torch {torch.__version__}, {threads} threads")
    print(f"reduction pass (5 dots, l1, linf, per layer): {1e3 * best_time(reduce, args.repeats):.2f} ms")
    read = [torch.cat([t.reshape(-1) for t in d.values()]) for d in sources.values()]
    read_ms = 1e3 * best_time(lambda: [v.sum() for v in read], args.repeats)
    print(f"one plain read of the 4 sources (sum)       : {read_ms:.2f} ms")
    print("relative error vs float64: " + ", ".join(f"{k} {v:.1e}" for k, v in errors.items()))


if __name__ == "__main__":
    main()
