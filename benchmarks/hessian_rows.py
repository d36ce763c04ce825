"""Time the exact Hessian rows H e_i of ``--per-layer`` sampled coordinates per layer (diagonal_uniformity):
one double-backward HVP at a time, vs one vmap'd forward-over-reverse call per ``--rows`` rows with
tangents on every parameter, vs the same with tangents on the sampled layer's parameters only (what
``hessian_rows`` does). Minimum over ``--repeats``; the rows of all three are checked to agree.

    PYTHONPATH=src python benchmarks/hessian_rows.py mlp_digits --options '{"widths": [64, 64, 64]}'
    PYTHONPATH=src python benchmarks/hessian_rows.py gpt_shakespeare --options '{"n_layer": 1, "n_embd": 32}'
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from torch.utils.data import DataLoader

from optprobe.curvature import HessianOperator, hessian_rows, sample_coordinates
from optprobe.evaluation import Evaluator, trained_parameters
from optprobe.experiments.tasks import build_task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task")
    parser.add_argument("--options", default="{}", help="task options as JSON")
    parser.add_argument("--per-layer", type=int, default=200)
    parser.add_argument("--rows", type=int, default=200, help="rows per batched call (and vmap chunk)")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    task = build_task(args.task, **json.loads(args.options))
    torch.manual_seed(0)
    model = task.model_fn()
    batch = next(iter(DataLoader(task.train, batch_size=task.batch_size)))
    evaluator, params = Evaluator(model, task.loss_fn), trained_parameters(model)
    sample = sample_coordinates(HessianOperator(evaluator, params, batch), args.per_layer, seed=0)
    n = sum(idx.numel() for idx in sample.values())

    def one_at_a_time(op: HessianOperator, idx: torch.Tensor) -> torch.Tensor:
        return torch.cat([hessian_rows(op, i.view(1)) for i in idx])

    def all_tangents(op: HessianOperator, idx: torch.Tensor) -> torch.Tensor:
        basis = torch.zeros(idx.numel(), op.dim, dtype=op.dtype)
        basis[torch.arange(idx.numel()), idx] = 1.0
        return op(basis)

    ways = {
        "one at a time (double backward)": ("double_backward", one_at_a_time),
        "batched, tangents on all parameters": ("forward", all_tangents),
        "batched, tangents on the layer only": ("forward", hessian_rows),
    }
    dim = sum(p.numel() for p in params.values())
    print(f"{args.task} {args.options}: {n} rows ({len(sample)} layers), d = {dim}")
    first, reference = None, None
    for label, (method, rows_of) in ways.items():
        best = float("inf")
        for _ in range(args.repeats):
            op = HessianOperator(evaluator, params, batch, chunk_size=args.rows, method=method)
            start = time.perf_counter()
            chunks = [chunk for idx in sample.values() for chunk in idx.split(args.rows)]
            rows = torch.cat([rows_of(op, chunk) for chunk in chunks])
            best = min(best, time.perf_counter() - start)
        first, reference = first or best, rows if reference is None else reference
        gap = float((rows - reference).abs().max() / reference.abs().max())
        speed = f"{best:7.2f} s ({best / n * 1e3:6.2f} ms/row)  x{first / best:5.2f}"
        print(f"  {label:38s} {speed}  rel. diff {gap:.1e}")


if __name__ == "__main__":
    main()
