"""When Hutch++ beats Hutchinson at equal Hessian-vector products, what one product with the Hessian of F
(the full evaluation loss) costs against one on a training batch, and the Gauss–Newton split on an MLP.

    PYTHONPATH=src python benchmarks/curvature_extras.py --width 32 --seeds 20 --chunks 8

Traces: the exact tr H comes from d unit-vector products in float64 (so ``--width`` keeps d small: 32 gives
d = 3466, 128 the d = 26122 MLP of benchmarks/curvature.py, slower); each estimator then runs from
``--seeds`` seeds at K products, K in ``--budgets``, and the table gives the root-mean-square relative
error over seeds (lower is better) and the ratio Hutch++ / Hutchinson (< 1: Hutch++ wins). The same is
done on a synthetic low-rank-plus-noise spectrum (12 large eigenvalues, 988 small), the case Hutch++ is
made for, and on a flat one, where it should lose.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import numpy as np
import torch
from torch import nn

from optprobe.curvature import (
    FullHessianOperator,
    HessianOperator,
    SplitLoss,
    gauss_newton_split,
    hessian_trace,
    hutchpp_trace,
    spectral_density,
)
from optprobe.evaluation import Evaluator, trained_parameters


def mlp(width: int) -> nn.Module:
    torch.manual_seed(0)
    layers = [nn.Linear(64, width), nn.Tanh(), nn.Linear(width, width), nn.Tanh(), nn.Linear(width, 10)]
    return nn.Sequential(*layers)


def xent_split() -> SplitLoss:
    return SplitLoss(lambda m, b: m(b[0]), lambda f, b: nn.functional.cross_entropy(f, b[1]))


class _Quadratic(nn.Module):
    def __init__(self, a: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("a", a)
        self.x = nn.Parameter(torch.zeros(a.shape[0], dtype=a.dtype))

    def forward(self, _: object) -> torch.Tensor:
        return 0.5 * self.x @ self.a @ self.x


def synthetic(eigenvalues: np.ndarray) -> HessianOperator:
    """The Hessian operator of ½ xᵀAx, A = Q diag(λ) Qᵀ with Q random orthogonal."""
    gen = torch.Generator().manual_seed(0)
    d = len(eigenvalues)
    q, _ = torch.linalg.qr(torch.randn(d, d, dtype=torch.float64, generator=gen))
    a = q @ torch.diag(torch.as_tensor(eigenvalues, dtype=torch.float64)) @ q.T
    model = _Quadratic(a)
    return HessianOperator(Evaluator(model, lambda m, b: m(b)), trained_parameters(model), None)


def exact_trace(op: HessianOperator, at_once: int = 256) -> float:
    """tr H = Σ_i e_iᵀ H e_i from d unit-vector products."""
    total = 0.0
    for start in range(0, op.dim, at_once):
        idx = torch.arange(start, min(start + at_once, op.dim))
        basis = torch.zeros(idx.numel(), op.dim, dtype=op.dtype)
        basis[torch.arange(idx.numel()), idx] = 1.0
        total += float(op(basis)[torch.arange(idx.numel()), idx].sum())
    return total


def trace_table(name: str, op: HessianOperator, budgets: list[int], seeds: int) -> None:
    exact = exact_trace(op)
    print(f"\n{name}: d = {op.dim}, tr H = {exact:.6g}")
    head = f"{'K':>5}  {'Hutchinson rms rel err':>22}  {'Hutch++ rms rel err':>20}  {'ratio':>6}"
    print(f"{head}  {'time ratio':>10}")
    for k in budgets:
        errs: dict[str, list[float]] = {"h": [], "pp": []}
        times: dict[str, float] = {"h": 0.0, "pp": 0.0}
        for seed in range(seeds):
            for key, fn in (("h", hessian_trace), ("pp", hutchpp_trace)):
                start = time.perf_counter()
                est = fn(op, k, seed)
                times[key] += time.perf_counter() - start
                errs[key].append((est.mean - exact) / abs(exact))
        rms = {key: math.sqrt(statistics.fmean(e * e for e in v)) for key, v in errs.items()}
        print(
            f"{k:>5}  {rms['h']:>22.3e}  {rms['pp']:>20.3e}  {rms['pp'] / rms['h']:>6.2f}"
            f"  {times['pp'] / times['h']:>10.2f}"
        )


def full_cost(width: int, chunks: int, batch: int) -> None:
    """Seconds per product: ∇²F over ``chunks`` chunks vs ∇²ℓ on one training batch (same size each)."""
    model = mlp(width)
    evaluator = Evaluator(model, xent_split())
    torch.manual_seed(1)
    loader = [(torch.randn(batch, 64), torch.randint(0, 10, (batch,))) for _ in range(chunks)]
    params = trained_parameters(model)
    v = torch.randn(sum(p.numel() for p in params.values()))

    def per_product(op, n: int = 5) -> float:
        op(v)  # the first product builds stored graphs
        start = time.perf_counter()
        for _ in range(n):
            op(v)
        return (time.perf_counter() - start) / n

    one = per_product(HessianOperator(evaluator, params, loader[0]))
    fresh = per_product(FullHessianOperator(evaluator, params, loader))
    kept = per_product(FullHessianOperator(evaluator, params, loader, keep_graphs=True))
    print(f"\nHessian of F over {chunks} chunks of {batch} (N/B = {chunks}), MLP width {width}, one vector:")
    print(f"  one training-batch HVP (stored graph)  : {one * 1e3:8.2f} ms  = 1 HVP-equivalent")
    for label, t in (("graphs rebuilt per chunk", fresh), ("keep_graphs=True", kept)):
        print(f"  ∇²F product, {label:<24}: {t * 1e3:8.2f} ms  = {t / one:5.1f} HVP-equivalents")


def split_report(width: int, batch: int) -> None:
    model = mlp(width).double()
    torch.manual_seed(2)
    data = (torch.randn(batch, 64, dtype=torch.float64), torch.randint(0, 10, (batch,)))
    evaluator = Evaluator(model, xent_split())
    params = trained_parameters(model)
    r = gauss_newton_split(evaluator, params, data, tol=1e-6, n_probes=50)
    d = spectral_density(HessianOperator(evaluator, params, data), n_starts=8, steps=40)
    print(f"\nGauss–Newton split at initialisation (MLP width {width}, batch {batch}, float64):")
    print(f"  λ_max(H) = {r.lambda_max_h:.5g}  λ_max(G) = {r.lambda_max_ggn:.5g}", end="")
    print(f"  λ_min(H) = {r.lambda_min_h:.3g}")
    print(f"  tr H = {r.trace_h:.5g} ± {r.trace_h_se:.2g}  tr G = {r.trace_ggn:.5g} ± {r.trace_ggn_se:.2g}")
    print(f"  negative mass (SLQ, 8 starts × 40 steps) = {d.negative_mass:.4f} ± {d.negative_mass_se:.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--budgets", type=int, nargs="+", default=[12, 24, 48, 99, 198])
    parser.add_argument("--chunks", type=int, default=8)
    parser.add_argument("--batch", type=int, default=256)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = mlp(args.width).double()
    torch.manual_seed(1)
    data = (torch.randn(args.batch, 64, dtype=torch.float64), torch.randint(0, 10, (args.batch,)))
    op = HessianOperator(Evaluator(model, xent_split()), trained_parameters(model), data)
    name = f"MLP 64-{args.width}-{args.width}-10, cross-entropy, batch {args.batch}"
    trace_table(name, op, args.budgets, args.seeds)
    rng = np.random.default_rng(0)
    low_rank = np.concatenate([np.geomspace(100.0, 5.0, 12), rng.uniform(-0.05, 0.2, 988)])
    trace_table("low rank + noise (12 large, 988 small)", synthetic(low_rank), args.budgets, args.seeds)
    flat = synthetic(rng.uniform(0.5, 1.5, 1000))
    trace_table("flat spectrum (uniform on [0.5, 1.5])", flat, args.budgets, args.seeds)
    full_cost(args.width, args.chunks, args.batch)
    split_report(args.width, args.batch)


if __name__ == "__main__":
    main()
