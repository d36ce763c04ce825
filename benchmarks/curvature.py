"""Time our Lanczos top eigenvalue vs PyHessian's power iteration at equal accuracy, forward-over-reverse
vs double-backward HVPs, and one ‖H‖₁,₁ estimate vs one training step, on an MLP and a small CNN.

    PYTHONPATH=src python benchmarks/curvature.py --targets 1e-3 1e-4 1e-5 --repeats 5 --seeds 5

Equal accuracy: the reference λ_max comes from Lanczos in float64 on a float64 copy of the model, run to
tol 1e-12 (its residual bound puts an eigenvalue within 1e-12·λ of it). Each solver then runs on the same
float32 model and batch, from a Gaussian start seeded with the same seed, at a ladder of its own stopping
tolerances from loose to tight; the loosest tolerance whose relative error |λ − λ_ref| / λ_ref meets each
``--targets`` value is timed (minimum over repeats, each including the solver's own set-up: our operator,
PyHessian's gradient graph). How many HVPs either solver needs depends on the start vector, so this is
repeated for ``--seeds`` start vectors and the speed-ups are summarised per target (median and worst).
PyHessian's power iteration gets ``maxIter`` = 10⁴ so that only its ``tol`` decides when it stops. Both
are also timed at the same stopping tolerance (1e-3, 1e-4), where the errors differ: ours stops on a
residual bound r ≤ tol·|θ|, PyHessian on the change per step.

Then all four side by side (benchmarks/curvature_peers.py): optprobe, PyHessian, hessian-eigenthings and
curvlinops for λ_max and tr H at equal accuracy, HVP counts and time ratios over start seeds. ``--quick``
runs only that part, on the small MLP, in a few minutes on a loaded 2-core machine:

    PYTHONPATH=src python benchmarks/curvature.py --quick
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import time
from collections.abc import Callable

import torch
from curvature_peers import compare, peer_models, pyhessian_top, small_cnn, xent
from torch import nn

from optprobe.curvature import HessianOperator, hessian_l11, sharpness
from optprobe.evaluation import Evaluator, trained_parameters

OUR_TOLS = (1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5, 3e-6, 1e-6)
SAME_TOLS = (1e-3, 1e-4)
PYHESSIAN_TOLS = (1e-3, 3e-4, 1e-4, 3e-5, 1e-5, 3e-6, 1e-6, 3e-7, 1e-7)


def best_time(fn: Callable[[], object], repeats: int) -> float:
    """min over repeats of the wall time of fn() (the machine is shared, the minimum is the least noisy)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def models() -> dict[str, tuple[nn.Module, torch.Tensor, torch.Tensor]]:
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(64, 128), nn.Tanh(), nn.Linear(128, 128), nn.Tanh(), nn.Linear(128, 10))
    cnn = small_cnn()
    return {
        "mlp": (mlp, torch.randn(256, 64), torch.randint(0, 10, (256,))),
        "cnn": (cnn, torch.randn(64, 3, 16, 16), torch.randint(0, 10, (64,))),
    }


def reference_top(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, bool]:
    """λ_max of the same loss in float64 by Lanczos to tol 1e-12, and whether it converged."""
    model64 = copy.deepcopy(model).double()
    op = HessianOperator(Evaluator(model64, xent), trained_parameters(model64), (x.double(), y))
    spec = sharpness(op, tol=1e-12, max_iter=500)
    return spec.top[0], spec.converged


def ours_top(
    ev: Evaluator, batch: tuple[torch.Tensor, torch.Tensor], tol: float, seed: int
) -> tuple[float, int]:
    spec = sharpness(
        HessianOperator(ev, trained_parameters(ev.model), batch), tol=tol, max_iter=10_000, seed=seed
    )
    return spec.top[0], spec.n_hvps


def timed(
    label: str, solve: Callable[[float], tuple[float, int]], tol: float, reference: float, repeats: int
) -> float:
    """Time ``solve(tol)`` (minimum over repeats), print its value, error and HVP count; return the time."""
    value, hvps = solve(tol)
    seconds = best_time(lambda: solve(tol), repeats)
    err = abs(value - reference) / abs(reference)
    print(
        f"{label:<16}: tol {tol:.0e}  λ = {value:.6f}  rel.err {err:.1e}  HVPs {hvps:5d}"
        f"  time {seconds * 1e3:8.1f} ms"
    )
    return seconds


def at_target(
    label: str,
    solve: Callable[[float], tuple[float, int]],
    tols: tuple[float, ...],
    reference: float,
    target: float,
    repeats: int,
) -> float | None:
    """Time ``solve`` at the loosest tol in ``tols`` whose relative error meets ``target``; print the line."""
    for tol in tols:
        value, hvps = solve(tol)
        err = abs(value - reference) / abs(reference)
        if err <= target:
            return timed(label, solve, tol, reference, repeats)
    print(f"{label:<16}: rel.err {err:.1e} > target even at tol {tols[-1]:.0e} ({hvps} HVPs)")
    return None


def hvp_times(
    ev: Evaluator, batch: tuple[torch.Tensor, torch.Tensor], repeats: int
) -> dict[str, tuple[float, float, float]]:
    """Per method: (one vector, fresh operator), (one vector, operator reused), (16 vectors, per vector)."""
    params = trained_parameters(ev.model)
    d = sum(p.numel() for p in params.values())
    v, block = torch.randn(d), torch.randn(16, d)
    times = {}
    for method in ("forward", "double_backward"):
        reused = HessianOperator(ev, params, batch, method=method)
        times[method] = (
            best_time(lambda m=method: HessianOperator(ev, params, batch, method=m)(v), repeats),
            best_time(lambda op=reused: op(v), repeats),
            best_time(lambda m=method: HessianOperator(ev, params, batch, method=m)(block), repeats) / 16,
        )
    return times


def _speedup(ratio: float) -> str:
    return f"×{ratio:.2f}" if math.isfinite(ratio) else "(PyHessian never gets there)"


def run(
    name: str,
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    targets: list[float],
    repeats: int,
    seeds: int,
) -> None:
    ev = Evaluator(model, xent)
    batch = (x, y)
    d = sum(p.numel() for p in trained_parameters(model).values())
    reference, certified = reference_top(model, x, y)
    print(
        f"\n== {name}: d = {d}, batch = {x.shape[0]}, float32; reference λ_max = {reference:.8f}"
        f" (float64 Lanczos, {'converged' if certified else 'NOT converged'})"
    )
    try:
        import pyhessian  # noqa: F401
    except ImportError:
        print("PyHessian       : not installed (pip install pyhessian)")
        pyhessian_installed = False
    else:
        pyhessian_installed = True
    speedups: dict[float, list[float]] = {target: [] for target in targets}
    for seed in range(seeds):  # the start vector is random, and so is each solver's HVP count
        for target in targets:
            print(f"-- start seed {seed}, target rel.err ≤ {target:.0e}")
            t_ours = at_target(
                "ours  Lanczos",
                lambda tol, s=seed: ours_top(ev, batch, tol, s),
                OUR_TOLS,
                reference,
                target,
                repeats,
            )
            if not pyhessian_installed:
                continue
            t_theirs = at_target(
                "PyHessian power",
                lambda tol, s=seed: pyhessian_top(model, (x, y), tol, s),
                PYHESSIAN_TOLS,
                reference,
                target,
                repeats,
            )
            if t_ours is not None and t_theirs is not None:
                speedups[target].append(t_theirs / t_ours)
                print(f"speed-up at equal accuracy: PyHessian time / ours = ×{t_theirs / t_ours:.2f}")
            elif t_ours is not None:  # PyHessian never got there: ours wins by more than any ratio
                speedups[target].append(math.inf)
    for target, ratios in speedups.items():
        if ratios:
            print(
                f"== {name}, target {target:.0e}: PyHessian time / ours over {len(ratios)} start seeds: "
                + " ".join(map(_speedup, ratios))
                + f"; median {_speedup(statistics.median(ratios))}, worst {_speedup(min(ratios))}"
            )
    seed = 0
    if pyhessian_installed:  # the same stopping tolerance: our stopping rule is stricter, so more accurate
        for tol in SAME_TOLS:
            print(f"-- same stopping tolerance {tol:.0e}, start seed {seed}")
            t_ours = timed("ours  Lanczos", lambda t: ours_top(ev, batch, t, seed), tol, reference, repeats)
            t_theirs = timed(
                "PyHessian power", lambda t: pyhessian_top(model, (x, y), t, seed), tol, reference, repeats
            )
            print(f"PyHessian time / ours = ×{t_theirs / t_ours:.2f}")

    times = hvp_times(ev, batch, repeats)
    (f_new, f_reuse, f16), (d_new, d_reuse, d16) = times["forward"], times["double_backward"]
    print(
        f"HVP, 1 vector, new operator  : forward-over-reverse {f_new * 1e3:7.2f} ms  double backward"
        f" {d_new * 1e3:7.2f} ms (builds the graph)  ratio fwd/dbl {f_new / d_new:.2f}"
    )
    print(
        f"HVP, 1 vector, same operator : forward-over-reverse {f_reuse * 1e3:7.2f} ms  double backward"
        f" {d_reuse * 1e3:7.2f} ms (graph reused)  ratio fwd/dbl {f_reuse / d_reuse:.2f}   [auto: dbl]"
    )
    print(
        f"HVP, 16 vectors, new operator: forward-over-reverse {f16 * 1e3:7.2f} ms/vec  double backward"
        f" {d16 * 1e3:7.2f} ms/vec  ratio fwd/dbl {f16 / d16:.2f}   [auto: fwd]"
    )

    def train_step() -> None:
        model.zero_grad(set_to_none=True)
        xent(model, batch).backward()

    t_step = best_time(train_step, repeats)
    model.zero_grad(set_to_none=True)
    t_l11 = best_time(
        lambda: hessian_l11(HessianOperator(ev, trained_parameters(model), batch), n_probes=50), repeats
    )
    print(
        f"hessian_l11 K=50: {t_l11 * 1e3:8.1f} ms = {t_l11 / t_step:.1f} training steps"
        f" ({t_step * 1e3:.2f} ms each)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--targets",
        type=float,
        nargs="+",
        default=[1e-3, 1e-4, 1e-5],
        help="relative errors both eigensolvers must meet (each timed separately)",
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed repetitions (minimum reported)")
    parser.add_argument(
        "--seeds", type=int, default=5, help="random start vectors (0, 1, …), each shared by both solvers"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads; on a shared, oversubscribed machine 2 threads gave 10-100x outliers",
    )
    parser.add_argument(
        "--models", nargs="*", choices=["mlp", "cnn"], default=["mlp", "cnn"], help="models of the first part"
    )
    parser.add_argument(
        "--peer-models", nargs="+", choices=["mlp32", "cnn"], default=["mlp32"], help="peer tables' models"
    )
    parser.add_argument(
        "--trace-targets", type=float, nargs="+", default=[0.2, 0.1], help="RMS relative errors of tr H"
    )
    parser.add_argument("--trace-seeds", type=int, default=20, help="probe seeds of the trace's RMS error")
    parser.add_argument("--quick", action="store_true", help="peer tables only: targets 1e-3 1e-4, 5 seeds")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), CPU")
    if args.quick:
        args.models, args.targets, args.seeds, args.repeats = [], [1e-3, 1e-4], 5, 3
    for name, (model, x, y) in models().items():
        if name in args.models:
            run(name, model, x, y, args.targets, args.repeats, args.seeds)
    for name, (model, x, y) in peer_models().items():
        if name in args.peer_models:
            targets = (args.targets, args.trace_targets)
            compare(name, model, x, y, *targets, args.seeds, args.repeats, args.trace_seeds)


if __name__ == "__main__":
    main()
