"""optprobe beside PyHessian, hessian-eigenthings and curvlinops for λ_max and tr H at equal accuracy.

Used by benchmarks/curvature.py (``--quick`` runs only this part). Every contender gets the same float32
model and batch and its own seeded random start (or probes), seeds 0, 1, …; the references are exact in
float64 (λ_max by Lanczos to tol 1e-12, tr H from d unit-vector products).

λ_max: each contender has a ladder of its own knob from loose to tight (optprobe and PyHessian a stopping
tol, hessian-eigenthings its number of Lanczos steps, curvlinops + SciPy's ARPACK ``eigsh`` its tol) and,
per start seed, the loosest setting whose relative error meets the target is kept. hessian-eigenthings'
Lanczos has no stopping rule (it runs ``max_iter`` steps), so its row (†) is an oracle: the fewest steps
that would have sufficed, known only from the reference. The row "optprobe, fixed steps †" is the same
oracle for our Lanczos; the gap between it and "optprobe Lanczos" is what a certified stop costs.
Trace: a stochastic estimate's error is random, so per contender the smallest probe budget K (same ladder
for all) whose root-mean-square relative error over the seeds meets the target is kept; optprobe and
curvlinops are run with Hutchinson and Hutch++, PyHessian (Hutchinson only) with ``tol = 0`` so that K
alone decides, hessian-eigenthings with its default Hutch++. The row "Hutchinson, exact" is the RMS error
every Hutchinson estimator has in expectation, √(2 Σ_{i≠j} H_ij² / K) / |tr H| from the exact Hessian:
Hutchinson rows differ from it, and from each other, only by the sampling noise of ``trace_seeds`` seeds.
HVPs are counted by wrapping each library's own product. Times are per seed the median over ``rounds``
rounds in which the contenders take turns (order rotated each round), each call including the contender's
own set-up (its operator, PyHessian's gradient graph).
"""

from __future__ import annotations

import copy
import math
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from optprobe.curvature import HessianOperator, hessian_trace, hutchpp_trace, sharpness
from optprobe.evaluation import Evaluator, trained_parameters

Batch = tuple[torch.Tensor, torch.Tensor]
Solve = Callable[[float], tuple[float, int]]  # knob -> (estimate, HVPs)

OURS_TOLS = (1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5, 3e-6, 1e-6)
PYHESSIAN_TOLS = (1e-3, 3e-4, 1e-4, 3e-5, 1e-5, 3e-6, 1e-6, 3e-7, 1e-7)
EIGENTHINGS_STEPS = (4, 6, 8, 10, 12, 14, 16, 20, 24, 28, 32, 40, 48, 64, 80)
EIGSH_TOLS = (1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5, 1e-6, 0.0)
TRACE_BUDGETS = (6, 12, 24, 48, 96, 192, 384)


def xent(model: nn.Module, batch: Batch) -> torch.Tensor:
    return nn.functional.cross_entropy(model(batch[0]), batch[1])


def small_cnn() -> nn.Module:
    """Two 3×3 convolutions (8, 16 channels) and a linear head on 16×16 RGB: the benchmarks' CNN."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(4),
        nn.Flatten(),
        nn.Linear(256, 10),
    )


def peer_models() -> dict[str, tuple[nn.Module, torch.Tensor, torch.Tensor]]:
    """A small MLP (d = 3466) whose exact trace is cheap, and the small CNN of benchmarks/curvature.py."""
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(64, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 10))
    cnn = small_cnn()
    return {
        "mlp32": (mlp, torch.randn(256, 64), torch.randint(0, 10, (256,))),
        "cnn": (cnn, torch.randn(64, 3, 16, 16), torch.randint(0, 10, (64,))),
    }


def references(model: nn.Module, batch: Batch) -> tuple[float, float, float]:
    """(λ_max, tr H, Σ_{i≠j} H_ij²) of the same loss in float64: Lanczos to tol 1e-12, and the rest from
    the d unit-vector products H e_i."""
    model64 = copy.deepcopy(model).double()
    batch64 = (batch[0].double(), batch[1])
    op = HessianOperator(Evaluator(model64, xent), trained_parameters(model64), batch64, chunk_size=64)
    spec = sharpness(op, tol=1e-12, max_iter=500)
    if not spec.converged:
        raise RuntimeError("the float64 reference λ_max did not converge")
    trace = squares = diagonal_squares = 0.0
    for start in range(0, op.dim, 256):
        idx = torch.arange(start, min(start + 256, op.dim))
        basis = torch.zeros(idx.numel(), op.dim, dtype=torch.float64)
        basis[torch.arange(idx.numel()), idx] = 1.0
        rows = op(basis)
        diagonal = rows[torch.arange(idx.numel()), idx]
        trace += float(diagonal.sum())
        squares += float((rows**2).sum())
        diagonal_squares += float((diagonal**2).sum())
    return spec.top[0], trace, squares - diagonal_squares


# --- optprobe -------------------------------------------------------------------------------------------


def ours_top(model: nn.Module, batch: Batch, tol: float, seed: int) -> tuple[float, int]:
    op = HessianOperator(Evaluator(model, xent), trained_parameters(model), batch)
    spec = sharpness(op, tol=tol, max_iter=10_000, seed=seed)
    return spec.top[0], spec.n_hvps


def ours_steps(model: nn.Module, batch: Batch, steps: float, seed: int) -> tuple[float, int]:
    """Our Lanczos for exactly ``steps`` steps (tol 0 never stops it): the same oracle as eigenthings' row."""
    op = HessianOperator(Evaluator(model, xent), trained_parameters(model), batch)
    spec = sharpness(op, tol=0.0, max_iter=int(steps), seed=seed)
    return spec.top[0], spec.n_hvps


def ours_trace(model: nn.Module, batch: Batch, k: int, seed: int, plus: bool) -> tuple[float, int]:
    op = HessianOperator(Evaluator(model, xent), trained_parameters(model), batch)
    est = hutchpp_trace(op, n_hvps=k, seed=seed) if plus else hessian_trace(op, n_probes=k, seed=seed)
    return est.mean, op.n_hvps


# --- PyHessian (power iteration; Hutchinson with its running-mean stop switched off) ---------------------


def _pyhessian_run(model: nn.Module, batch: Batch, seed: int, call: Callable[[object], object]) -> tuple:
    from pyhessian import hessian

    counter = {"n": 0}
    module = sys.modules["pyhessian.hessian"]  # the package re-exports the class under the module's name
    original = module.hessian_vector_product

    def counted(*args: object) -> object:
        counter["n"] += 1
        return original(*args)

    module.hessian_vector_product = counted
    try:
        with torch.random.fork_rng(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Using backward\\(\\) with create_graph=True")  # its own graph
            torch.manual_seed(seed)  # PyHessian draws its vectors from the global generator
            result = call(hessian(model, nn.CrossEntropyLoss(), data=batch, cuda=False))
    finally:
        module.hessian_vector_product = original
        model.zero_grad(set_to_none=True)
    return result, counter["n"]


def pyhessian_top(model: nn.Module, batch: Batch, tol: float, seed: int) -> tuple[float, int]:
    (eigs, _), n = _pyhessian_run(
        model, batch, seed, lambda h: h.eigenvalues(maxIter=10_000, tol=tol, top_n=1)
    )
    return float(eigs[0]), n


def pyhessian_trace(model: nn.Module, batch: Batch, k: int, seed: int) -> tuple[float, int]:
    # tol = −inf: its stop |mean − previous| / (previous + 1e-6) < tol divides by the signed running mean,
    # so with tol = 0 it still stops as soon as that mean turns negative (seed 18 of the small MLP: after
    # 2 products, 2.27 for 6.23)
    samples, n = _pyhessian_run(model, batch, seed, lambda h: h.trace(maxIter=k, tol=-math.inf))
    return float(np.mean(samples)), n


# --- hessian-eigenthings (1.0: its own Lanczos for a fixed number of steps, Hutch++) ---------------------


def _eigenthings_operator(model: nn.Module, batch: Batch) -> tuple[object, dict[str, int]]:
    import hessian_eigenthings as he

    counter = {"n": 0}
    inner = he.HessianOperator(model, [batch], he.supervised_loss(nn.functional.cross_entropy))

    def matvec(v: torch.Tensor) -> torch.Tensor:
        counter["n"] += 1
        return inner.matvec(v)

    return he.LambdaOperator(matvec, size=inner.size, device=inner.device, dtype=inner.dtype), counter


def eigenthings_top(model: nn.Module, batch: Batch, steps: float, seed: int) -> tuple[float, int]:
    import hessian_eigenthings as he

    op, counter = _eigenthings_operator(model, batch)
    result = he.lanczos(op, k=1, max_iter=int(steps), which="LA", seed=seed)
    model.zero_grad(set_to_none=True)
    return float(result.eigenvalues[0]), counter["n"]


def eigenthings_trace(model: nn.Module, batch: Batch, k: int, seed: int) -> tuple[float, int]:
    import hessian_eigenthings as he

    op, counter = _eigenthings_operator(model, batch)
    result = he.trace(op, num_matvecs=k, seed=seed)  # its default: Hutch++
    model.zero_grad(set_to_none=True)
    return result.estimate, counter["n"]


# --- curvlinops (HessianLinearOperator; SciPy eigsh; its Hutchinson and Hutch++) -------------------------


def _curvlinops_operator(model: nn.Module, batch: Batch) -> object:
    from curvlinops import HessianLinearOperator

    params = [p for p in model.parameters() if p.requires_grad]
    return HessianLinearOperator(model, nn.CrossEntropyLoss(), params, [batch], check_deterministic=False)


def curvlinops_top(model: nn.Module, batch: Batch, tol: float, seed: int) -> tuple[float, int]:
    from scipy.sparse.linalg import LinearOperator, eigsh

    inner = _curvlinops_operator(model, batch).to_scipy()
    counter = {"n": 0}

    def matvec(v: np.ndarray) -> np.ndarray:
        counter["n"] += 1
        return inner @ v

    op = LinearOperator(inner.shape, matvec=matvec, dtype=inner.dtype)
    v0 = np.random.default_rng(seed).standard_normal(inner.shape[0]).astype(inner.dtype)
    value = eigsh(op, k=1, which="LA", tol=tol, v0=v0, return_eigenvectors=False)
    return float(value[0]), counter["n"]


def curvlinops_trace(model: nn.Module, batch: Batch, k: int, seed: int, plus: bool) -> tuple[float, int]:
    from curvlinops import hutchinson_trace
    from curvlinops import hutchpp_trace as their_hutchpp

    op = _curvlinops_operator(model, batch)
    with torch.random.fork_rng():
        torch.manual_seed(seed)  # curvlinops draws its probes from the global generator
        value = (their_hutchpp if plus else hutchinson_trace)(op, k)
    return float(value), k  # A @ G multiplies the k probe columns, one HVP each


# --- equal accuracy, timing, table ---------------------------------------------------------------------


@dataclass
class Row:
    """One contender at one target: per seed its HVPs and its time (s); or why it is missing."""

    name: str
    hvps: list[int]
    seconds: list[float]
    missing: str = ""


def loosest(
    solve: Solve, knobs: tuple[float, ...], reference: float, target: float
) -> tuple[float, int] | None:
    """(knob, HVPs) of the loosest knob whose relative error meets ``target``, or None."""
    for knob in knobs:
        value, hvps = solve(knob)
        if abs(value - reference) / abs(reference) <= target:
            return knob, hvps
    return None


def interleaved_times(calls: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Median wall time per call over ``rounds`` rounds, the calls taking turns in a rotated order."""
    names = list(calls)
    for name in names:
        calls[name]()  # warm up
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            start = time.perf_counter()
            calls[name]()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def spread(values: list[float], fmt: str) -> str:
    """median [min–max]."""
    if not values:
        return "–"
    return f"{statistics.median(values):{fmt}} [{min(values):{fmt}}–{max(values):{fmt}}]"


def print_table(title: str, rows: list[Row]) -> None:
    """HVPs, time and both ratios to the first row, per seed, as median [min–max] over seeds."""
    base = rows[0]
    print(f"\n{title}")
    print(f"{'contender':<26} {'HVPs':>16} {'time ms':>22} {'HVPs / optprobe':>22} {'time / optprobe':>22}")
    for row in rows:
        if row.missing:
            print(f"{row.name:<26} {row.missing}")
            continue
        comparable = not base.missing and len(row.hvps) == len(base.hvps)
        hvp_ratio = [h / b for h, b in zip(row.hvps, base.hvps, strict=True)] if comparable else []
        time_ratio = [t / b for t, b in zip(row.seconds, base.seconds, strict=True)] if comparable else []
        ms = [s * 1e3 for s in row.seconds]
        print(
            f"{row.name:<26} {spread(row.hvps, '.0f'):>16} {spread(ms, '.1f'):>22}"
            f" {spread(hvp_ratio, '.2f'):>22} {spread(time_ratio, '.2f'):>22}"
        )


def top_rows(
    model: nn.Module, batch: Batch, reference: float, target: float, seeds: int, rounds: int
) -> list[Row]:
    """λ_max to relative error ``target``: each contender's loosest setting per seed, then timed."""
    solvers: dict[str, tuple[Callable[[float, int], tuple[float, int]], tuple[float, ...]]] = {
        "optprobe Lanczos": (lambda t, s: ours_top(model, batch, t, s), OURS_TOLS),
        "optprobe, fixed steps †": (lambda m, s: ours_steps(model, batch, m, s), EIGENTHINGS_STEPS),
        "PyHessian power iteration": (lambda t, s: pyhessian_top(model, batch, t, s), PYHESSIAN_TOLS),
        "eigenthings Lanczos †": (lambda m, s: eigenthings_top(model, batch, m, s), EIGENTHINGS_STEPS),
        "curvlinops + eigsh": (lambda t, s: curvlinops_top(model, batch, t, s), EIGSH_TOLS),
    }
    rows = {name: Row(name, [], []) for name in solvers}
    for seed in range(seeds):
        calls = {}
        for name, (solve, knobs) in solvers.items():
            found = loosest(lambda knob, f=solve, s=seed: f(knob, s), knobs, reference, target)
            if found is None:
                rows[name].missing = f"misses {target:.0e} from seed {seed} even at its tightest setting"
                continue
            knob, hvps = found
            rows[name].hvps.append(hvps)
            calls[name] = lambda f=solve, k=knob, s=seed: f(k, s)
        for name, seconds in interleaved_times(calls, rounds).items():
            rows[name].seconds.append(seconds)
    return [row if not row.missing else Row(row.name, [], [], row.missing) for row in rows.values()]


def trace_solvers(model: nn.Module, batch: Batch) -> dict[str, Callable[[int, int], tuple[float, int]]]:
    """Each contender's tr H estimate from K probes (or K products, Hutch++) and its HVP count."""
    return {
        "optprobe Hutchinson": lambda k, s: ours_trace(model, batch, k, s, plus=False),
        "optprobe Hutch++": lambda k, s: ours_trace(model, batch, k, s, plus=True),
        "PyHessian Hutchinson": lambda k, s: pyhessian_trace(model, batch, k, s),
        "eigenthings Hutch++": lambda k, s: eigenthings_trace(model, batch, k, s),
        "curvlinops Hutchinson": lambda k, s: curvlinops_trace(model, batch, k, s, plus=False),
        "curvlinops Hutch++": lambda k, s: curvlinops_trace(model, batch, k, s, plus=True),
    }


def trace_study(
    model: nn.Module,
    batch: Batch,
    reference: float,
    off_diagonal: float,
    targets: list[float],
    seeds: int,
    timed: int,
    rounds: int,
) -> None:
    """Per contender the RMS relative error over ``seeds`` seeds at each budget K (until every target is
    met), then per target the smallest K that meets it, timed on the first ``timed`` seeds."""
    solvers = trace_solvers(model, batch)
    rms: dict[str, dict[int, tuple[float, int]]] = {name: {} for name in solvers}  # K -> (RMS, HVPs)
    for name, solve in solvers.items():
        for k in TRACE_BUDGETS:
            runs = [solve(k, seed) for seed in range(seeds)]
            errors = [abs(value - reference) / abs(reference) for value, _ in runs]
            rms[name][k] = (math.sqrt(statistics.fmean(e * e for e in errors)), max(h for _, h in runs))
            if rms[name][k][0] <= min(targets):
                break
    print(f"\ntr H: RMS relative error over {seeds} probe seeds at K products")
    print(f"{'contender':<26}" + "".join(f"{'K=' + str(k):>9}" for k in TRACE_BUDGETS))
    for name, by_k in rms.items():
        cells = [f"{by_k[k][0]:9.3f}" if k in by_k else " " * 9 for k in TRACE_BUDGETS]
        print(f"{name:<26}" + "".join(cells))
    exact = [math.sqrt(2 * off_diagonal / k) / abs(reference) for k in TRACE_BUDGETS]  # Var = 2Σ_{i≠j}H_ij²
    print(f"{'Hutchinson, exact':<26}" + "".join(f"{e:9.3f}" for e in exact))
    for target in targets:
        rows, chosen = {}, {}
        for name in solvers:
            met = [k for k, (err, _) in rms[name].items() if err <= target]
            rows[name] = Row(name, [], [], "" if met else f"RMS error > {target:.0e} at every K tried")
            if met:
                chosen[name] = min(met)
                rows[name].hvps = [rms[name][chosen[name]][1]] * timed
        for seed in range(timed):
            calls = {name: lambda f=solvers[name], k=k, s=seed: f(k, s) for name, k in chosen.items()}
            for name, seconds in interleaved_times(calls, rounds).items():
                rows[name].seconds.append(seconds)
        title = f"tr H to RMS rel. error ≤ {target:.0e} (smallest K; times over {timed} seeds)"
        print_table(title, list(rows.values()))


def compare(
    name: str,
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    top_targets: list[float],
    trace_targets: list[float],
    seeds: int,
    rounds: int,
    trace_seeds: int = 10,
) -> None:
    """Print the λ_max and trace tables of one model."""
    for module in ("pyhessian", "hessian_eigenthings", "curvlinops"):
        try:
            __import__(module)
        except ImportError:
            print(f"{module} is not installed: pip install --no-deps it (see scripts/install.sh)")
            return
    batch = (x, y)
    d = sum(p.numel() for p in trained_parameters(model).values())
    top, trace, off_diagonal = references(model, batch)
    print(
        f"\n== peers on {name}: d = {d}, batch = {x.shape[0]}, float32; float64 references"
        f" λ_max = {top:.6f}, tr H = {trace:.6f}; {seeds} seeds, {rounds} timing rounds"
    )
    for target in top_targets:
        rows = top_rows(model, batch, top, target, seeds, rounds)
        print_table(f"λ_max to rel. error ≤ {target:.0e} (median [min–max] over {seeds} start seeds)", rows)
    trace_study(model, batch, trace, off_diagonal, trace_targets, trace_seeds, seeds, rounds)
