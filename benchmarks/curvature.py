"""Time our Lanczos top eigenvalue vs PyHessian's power iteration (at the same tolerance, then at equal
accuracy: PyHessian's tolerance tightened until its error is no larger than ours), forward-over-reverse
vs double-backward HVPs, and one ‖H‖₁,₁ estimate vs one training step, on an MLP and a small CNN.

    PYTHONPATH=src python benchmarks/curvature.py --tol 1e-3 --repeats 3
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

import torch
from torch import nn

from optprobe.curvature import HessianOperator, hessian_l11, sharpness
from optprobe.evaluation import Evaluator, trained_parameters


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
    cnn = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(4),
        nn.Flatten(),
        nn.Linear(256, 10),
    )
    return {
        "mlp": (mlp, torch.randn(256, 64), torch.randint(0, 10, (256,))),
        "cnn": (cnn, torch.randn(64, 3, 16, 16), torch.randint(0, 10, (64,))),
    }


def pyhessian_top(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, tol: float, max_iter: int = 100
) -> tuple[float, int] | None:
    try:
        from pyhessian import hessian
    except ImportError:
        return None
    counter = {"n": 0}
    ph = sys.modules["pyhessian.hessian"]  # the package re-exports the class under the module's name

    original = ph.hessian_vector_product

    def counted(*args: object) -> object:
        counter["n"] += 1
        return original(*args)

    ph.hessian_vector_product = counted
    try:
        eigs, _ = hessian(model, nn.CrossEntropyLoss(), data=(x, y), cuda=False).eigenvalues(
            maxIter=max_iter, top_n=1, tol=tol
        )
    finally:
        ph.hessian_vector_product = original
        model.zero_grad(set_to_none=True)
    return float(eigs[0]), counter["n"]


def run(name: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor, tol: float, repeats: int) -> None:
    ev = Evaluator(model, lambda m, b: nn.functional.cross_entropy(m(b[0]), b[1]))
    params = trained_parameters(model)
    batch = (x, y)
    d = sum(p.numel() for p in params.values())
    reference = sharpness(HessianOperator(ev, params, batch), tol=1e-10, max_iter=300).top[0]
    print(f"\n== {name}: d = {d}, batch = {x.shape[0]}, reference λ_max = {reference:.6f}")

    ours = sharpness(HessianOperator(ev, params, batch), tol=tol)
    t_ours = best_time(lambda: sharpness(HessianOperator(ev, params, batch), tol=tol), repeats)
    print(
        f"ours  Lanczos   : λ = {ours.top[0]:.6f} rel.err {abs(ours.top[0] - reference) / reference:.1e}"
        f"  HVPs {ours.n_hvps:4d}  time {t_ours * 1e3:8.1f} ms"
    )
    theirs = pyhessian_top(model, x, y, tol)
    if theirs is None:
        print("PyHessian       : not installed (pip install pyhessian)")
    else:
        t_theirs = best_time(lambda: pyhessian_top(model, x, y, tol), repeats)
        print(
            f"PyHessian power : λ = {theirs[0]:.6f} rel.err {abs(theirs[0] - reference) / reference:.1e}"
            f"  HVPs {theirs[1]:4d}  time {t_theirs * 1e3:8.1f} ms   speed-up ×{t_theirs / t_ours:.2f}"
            "  (same tol, unequal accuracy)"
        )
        # equal accuracy: tighten PyHessian's tolerance until its error is no larger than ours
        target = max(abs(ours.top[0] - reference) / reference, 1e-12)
        for ph_tol in (tol / 10**k for k in range(0, 8)):
            theirs = pyhessian_top(model, x, y, ph_tol, max_iter=2000)
            if abs(theirs[0] - reference) / reference <= target:
                t_theirs = best_time(lambda t=ph_tol: pyhessian_top(model, x, y, t, max_iter=2000), repeats)
                err = abs(theirs[0] - reference) / reference
                print(
                    f"PyHessian power : λ = {theirs[0]:.6f} rel.err {err:.1e}  HVPs {theirs[1]:4d}"
                    f"  time {t_theirs * 1e3:8.1f} ms   speed-up ×{t_theirs / t_ours:.2f}"
                    f"  (equal accuracy: its tol {ph_tol:.0e})"
                )
                break
        else:
            print(f"PyHessian power : never reached rel.err ≤ {target:.1e} (tol down to {tol / 1e7:.0e})")

    v = torch.randn(d)
    block = torch.randn(16, d)
    times = {}
    for method in ("forward", "double_backward"):
        times[method] = (
            best_time(lambda m=method: HessianOperator(ev, params, batch, method=m)(v), repeats),
            best_time(lambda m=method: HessianOperator(ev, params, batch, method=m)(block), repeats) / 16,
        )
    (f1, f16), (d1, d16) = times["forward"], times["double_backward"]
    print(
        f"HVP, 1 vector   : forward-over-reverse {f1 * 1e3:7.2f} ms  double backward {d1 * 1e3:7.2f} ms"
        f"  ratio fwd/dbl {f1 / d1:.2f}"
    )
    print(
        f"HVP, 16 vectors : forward-over-reverse {f16 * 1e3:7.2f} ms/vec  double backward {d16 * 1e3:7.2f}"
        f"  ratio fwd/dbl {f16 / d16:.2f}"
    )

    def train_step() -> None:
        model.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()

    t_step = best_time(train_step, repeats)
    model.zero_grad(set_to_none=True)
    t_l11 = best_time(lambda: hessian_l11(HessianOperator(ev, params, batch), n_probes=50), repeats)
    print(
        f"hessian_l11 K=50: {t_l11 * 1e3:8.1f} ms = {t_l11 / t_step:.1f} training steps"
        f" ({t_step * 1e3:.2f} ms each)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tol", type=float, default=1e-3, help="relative tolerance for both eigensolvers")
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions (minimum reported)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for name, (model, x, y) in models().items():
        run(name, model, x, y, args.tol, args.repeats)


if __name__ == "__main__":
    main()
