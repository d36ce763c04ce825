"""DDP on CPU (gloo, 2 processes): the probe's own collectives when ranks differ.

Ranks whose losses use different parameters (data-dependent routing), curvature on each rank's own batch,
and a rank whose evaluation loader is empty: every rank must enter the same collectives with the same
tensors, and the values must equal a single process on the union of the ranks' data.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from test_ddp import _free_port, process_group
from torch import nn

from optprobe.errors import OptprobeError
from optprobe.evaluation import Evaluator
from optprobe.metrics.curvature import DiagonalGeometry, HessianL11, HessianTrace, Sharpness
from optprobe.probe import Probe, ProbeConfig

WORLD = 2
TIMEOUT = 20.0  # seconds a collective may wait: a mismatched collective fails instead of hanging


def _spawn(worker, tmp_path: Path) -> list[dict]:
    """``worker(rank, out_dir)`` on 2 gloo ranks; what each rank saved as ``rank<r>.pt``."""
    mp.spawn(_run, args=(worker, _free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    return [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]


def _run(rank: int, worker, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    with process_group(rank, WORLD, port, timeout=TIMEOUT):
        torch.save(worker(rank), Path(out_dir) / f"rank{rank}.pt")


# ------------------------------------------------------------------ data-dependent routing
class Routed(nn.Module):
    """A shared body, then head ``a`` or head ``b`` as the batch's flag says (like MoE or conditional layers).

    The heads have equal shapes, so ranks that pair a's gradient with b's get wrong values, not an error.
    """

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Linear(3, 4).double()
        self.a = nn.Linear(4, 1).double()
        self.b = nn.Linear(4, 1).double()

    def forward(self, x: torch.Tensor, use_a: bool) -> torch.Tensor:
        return (self.a if use_a else self.b)(torch.tanh(self.body(x)))


def _routed_loss(model: nn.Module, batch) -> torch.Tensor:
    x, y, use_a = batch
    return ((model(x, bool(use_a)).squeeze(-1) - y) ** 2).mean()


def _routed_batch(rank: int, n: int = 8, seed: int = 0):
    """A batch of rank ``rank``: rank 0's batches go through head a, rank 1's through head b."""
    g = torch.Generator().manual_seed(100 * rank + seed)
    x = torch.randn(n, 3, generator=g, dtype=torch.float64)
    return x, torch.randn(n, generator=g, dtype=torch.float64), rank == 0


def _routed_eval(rank: int):
    """Rank r's evaluation chunks: all through its own head, with sizes that differ between ranks."""
    return [_routed_batch(rank, 8), _routed_batch(rank, 3 + rank, seed=1)]


def _routed_worker(rank: int) -> dict:
    model = Routed()
    evaluator = Evaluator(model, _routed_loss)
    point = {name: p.detach() for name, p in model.named_parameters()}
    loss, grad = evaluator.loss_and_grad(point, _routed_batch(rank))
    streamed: list[str] = []
    evaluator.stream_grad(point, _routed_batch(rank), lambda name, g: streamed.append(name))
    full_loss, full_grad, n = evaluator.full_loss_and_grad(point, _routed_eval(rank))
    return {"loss": loss, "grad": grad, "order": streamed, "full": (full_loss, full_grad, n)}


@pytest.mark.slow
def test_ddp_gradients_when_ranks_use_different_parameters(tmp_path):
    ranks = _spawn(_routed_worker, tmp_path)
    model = Routed()
    evaluator = Evaluator(model, _routed_loss)  # one process: no collective
    point = {name: p.detach() for name, p in model.named_parameters()}
    per_rank = [evaluator.loss_and_grad(point, _routed_batch(r)) for r in range(WORLD)]
    chunks = [chunk for r in range(WORLD) for chunk in _routed_eval(r)]
    full_loss, full_grad, n = evaluator.full_loss_and_grad(point, chunks)
    assert per_rank[0][1]["b.weight"].abs().sum() == 0 and per_rank[1][1]["a.weight"].abs().sum() == 0
    for got in ranks:
        # DDP's gradient: the rank mean of each rank's own gradient, zeros where a rank skips a head
        torch.testing.assert_close(got["loss"], (per_rank[0][0] + per_rank[1][0]) / 2, rtol=1e-12, atol=0)
        for name in point:
            expected = (per_rank[0][1][name] + per_rank[1][1][name]) / 2
            torch.testing.assert_close(got["grad"][name], expected, rtol=1e-12, atol=1e-15)
        assert got["order"] == list(reversed(point))  # one fixed order on every rank
        # full batch: the example-weighted mean over both ranks' chunks, as one process on all of them
        assert got["full"][2] == n
        torch.testing.assert_close(got["full"][0], full_loss, rtol=1e-12, atol=0)
        assert list(got["full"][1]) == list(point)
        for name in point:
            torch.testing.assert_close(got["full"][1][name], full_grad[name], rtol=1e-12, atol=1e-15)


# ------------------------------------------------------------------------------ curvature
def _curvature_data():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(32, 3, generator=g, dtype=torch.float64)
    return x, torch.sin(x.sum(1)) + 0.1 * torch.randn(32, generator=g, dtype=torch.float64)


def _curvature_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Linear(6, 1)).double()


def _mse(model: nn.Module, batch) -> torch.Tensor:
    return ((model(batch[0]).squeeze(-1) - batch[1]) ** 2).mean()


def _curvature_row(model: nn.Module, rank: int = 0, world: int = 1) -> dict:
    """One probed step whose periodic metrics run on the training batch (each rank's shard of it)."""
    periodic = [
        Sharpness(every=1, k=2, bottom=True, max_iter=50),
        HessianTrace(every=1, n_probes=20, seed=3),
        HessianL11(every=1, n_probes=10, seed=4),
    ]
    return _probed_step(model, rank, world, periodic)


def _probed_step(model: nn.Module, rank: int, world: int, periodic: list, eval_loader=None) -> dict:
    """The row of one probed step on this rank's shard of the curvature data."""
    x, y = _curvature_data()
    batch = (x[rank::world], y[rank::world])
    config = ProbeConfig(metrics=("norms",))
    probe = Probe(model, _mse, config=config, periodic=periodic, eval_loader=eval_loader, out_dir=None)
    probe.begin_step(batch)
    model.zero_grad()
    loss = _mse(model, batch)
    loss.backward()
    return probe.end_step(loss)


def _curvature_worker(rank: int) -> dict:
    return _curvature_row(nn.parallel.DistributedDataParallel(_curvature_model()), rank, WORLD)


@pytest.mark.slow
def test_ddp_curvature_is_the_hessian_of_the_global_batch(tmp_path):
    ranks = _spawn(_curvature_worker, tmp_path)
    single = _curvature_row(_curvature_model())
    keys = ["sharpness", "sharpness_2", "sharpness_min", "sharpness_hvps", "hessian_trace"]
    keys += ["hessian_trace_se", "hessian_l11"]
    for row in ranks:  # every rank, not only the writer, saw the global operator
        for key in keys:
            assert row[key] == pytest.approx(single[key], rel=1e-9, abs=1e-12), key


CHUNKS = (5, 3, 6, 2, 7, 4, 5)  # unequal: rank 0 reads 4 chunks (23 examples), rank 1 three (9)


def _full_curvature_row(model: nn.Module, rank: int = 0, world: int = 1) -> dict:
    """One probed step whose periodic metrics multiply ∇²F over the eval loader (each rank its chunks)."""
    x, y = _curvature_data()
    starts = [sum(CHUNKS[:i]) for i in range(len(CHUNKS))]
    chunks = [(x[a : a + n], y[a : a + n]) for a, n in zip(starts, CHUNKS, strict=True)]
    periodic = [
        Sharpness(every=1, k=2, bottom=True, max_iter=50, on="eval"),
        HessianTrace(every=1, n_probes=20, seed=3, on="eval"),
        HessianL11(every=1, n_probes=10, seed=4, on="eval"),
        DiagonalGeometry(every=1, per_layer=100, n_boot=10, on="eval"),
    ]
    return _probed_step(model, rank, world, periodic, chunks[rank::world])


def _full_curvature_worker(rank: int) -> dict:
    return _full_curvature_row(nn.parallel.DistributedDataParallel(_curvature_model()), rank, WORLD)


@pytest.mark.slow
def test_ddp_curvature_on_f_is_the_hessian_of_f_over_every_ranks_chunks(tmp_path):
    """on="eval" under DDP: ranks read disjoint chunks of unequal sizes; sharpness, trace, ‖H‖₁,₁, R_med and
    F equal one process's over all the chunks."""
    ranks = _spawn(_full_curvature_worker, tmp_path)
    single = _full_curvature_row(_curvature_model())
    keys = ["sharpness", "sharpness_2", "sharpness_min", "sharpness_hvps", "hessian_trace"]
    keys += ["hessian_trace_se", "hessian_l11", "r_med_loss"]
    keys += [k for k in single if k.startswith(("r_med/", "diag_dominance_"))]
    assert len(keys) > 8
    for row in ranks:
        for key in keys:
            assert row[key] == pytest.approx(single[key], rel=1e-9, abs=1e-12), key


# ----------------------------------------------------------------------- empty eval shard
def _linear_full_batch(shards: list[list]) -> list[tuple]:
    """F and ∇F of a linear model at its initialisation over each of ``shards`` (lists of chunks)."""
    torch.manual_seed(0)
    model = nn.Linear(3, 2).double()
    x, y = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 2, dtype=torch.float64)
    evaluator = Evaluator(model, lambda m, b: ((m(b[0]) - b[1]) ** 2).mean())
    point = {name: p.detach() for name, p in model.named_parameters()}
    return [evaluator.full_loss_and_grad(point, [(x, y)] * chunks) for chunks in shards]


def _empty_worker(rank: int) -> dict:
    full = _linear_full_batch([1 - rank])  # rank 1's loader yields nothing
    with pytest.raises(OptprobeError, match="yielded no batch"):  # every rank empty: the same error on all
        _linear_full_batch([0])
    return {"full": full[0]}


@pytest.mark.slow
def test_ddp_full_batch_with_an_empty_eval_shard(tmp_path):
    ranks = _spawn(_empty_worker, tmp_path)
    [(loss, grad, n)] = _linear_full_batch([1])  # one process on rank 0's data, the only data there is
    for got in ranks:
        got_loss, got_grad, got_n = got["full"]
        assert got_n == n == 4
        torch.testing.assert_close(got_loss, loss, rtol=1e-12, atol=0)
        for name in grad:
            torch.testing.assert_close(got_grad[name], grad[name], rtol=1e-12, atol=1e-15)


# ------------------------------------------------------------------ set-up errors on one rank
def _probe_in_a_used_directory(run_dir: str, rank: int) -> str:
    """Only rank 0 looks at the run directory; its refusal must reach rank 1, not leave it waiting."""
    try:
        Probe(nn.Linear(3, 1).double(), lambda m, b: m(b).sum(), out_dir=run_dir)
    except OptprobeError as exc:
        return str(exc)
    return "no error"


def test_a_set_up_error_on_rank_zero_is_raised_on_every_rank(tmp_path):
    run_dir = tmp_path / "used"
    Probe(nn.Linear(3, 1), lambda m, b: m(b).sum(), out_dir=run_dir).close()  # a run is already there
    errors = _spawn(functools.partial(_probe_in_a_used_directory, str(run_dir)), tmp_path)
    assert "already holds an optprobe run" in errors[0]
    assert "another rank failed" in errors[1]
