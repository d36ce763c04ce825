"""The side-by-side benchmarks measure what they say: fair contenders, each process's own peak memory."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import peers  # noqa: E402
from _common import loss_fn, peak_memory, reset_peak_memory  # noqa: E402


def test_a_child_reports_its_own_peak_memory_not_its_larger_parents():
    """A fresh process started by a parent holding 400 MB must not report the parent's resident size."""
    if not Path("/proc/self/status").exists():
        pytest.skip("peak RSS of a process's own address space is read from /proc (Linux)")
    child = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(BENCHMARKS)!r})
        from _common import peak_memory
        print(peak_memory("cpu"))
        """
    )
    ballast = bytearray(b"1") * (400 * 2**20)  # written, so resident (not only mapped)
    out = subprocess.run([sys.executable, "-c", child], check=True, capture_output=True, text=True)
    parent = peak_memory("cpu")
    assert parent > 400 * 2**20
    assert float(out.stdout.strip()) < parent - 300 * 2**20
    del ballast


def test_a_reset_peak_counts_only_what_comes_after_it():
    """200 MB held and freed before the reset are not in the peak after it (a warm-up's compile, say)."""
    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("the peak RSS is reset through /proc (Linux)")
    ballast = bytearray(b"1") * (200 * 2**20)
    before = peak_memory("cpu")
    del ballast
    reset_peak_memory("cpu")
    assert peak_memory("cpu") < before - 150 * 2**20


def test_live_tensor_peak_counts_the_snapshot_of_x_prev():
    """Gaps only with compiled reductions holds x_{t−1} and little else: 1 to 1.1 parameter copies above
    plain SGD, the same in every run (allocator events, not resident pages)."""
    copy = 4 * sum(p.numel() for p in peers.make_model("tiny")[0].parameters())
    gaps = "optprobe gaps only, compiled"
    peak = {name: peers.live_tensor_peak(name, "tiny", "cpu", 3) for name in ("plain", gaps)}
    assert 1.0 <= (peak[gaps] - peak["plain"]) / copy <= 1.1
    assert peers.live_tensor_peak("plain", "tiny", "cpu", 3) == peak["plain"]


@pytest.mark.parametrize("name", [n for n in peers.CONTENDERS if n != "plain"])
def test_every_contender_trains_the_same_trajectory_as_plain_sgd(name):
    """What a contender measures must not change training: after 3 steps its parameters are plain's."""
    if name in peers.COCKPIT:
        try:
            peers.import_cockpit()
        except Exception as error:  # noqa: BLE001
            pytest.skip(f"Cockpit does not import here: {error}")
    plain, other = peers.Contender("plain", "tiny", "cpu"), peers.Contender(name, "tiny", "cpu")
    for contender in (plain, other):
        contender.run(3)
        contender.close()
    for p, q in zip(plain.model.parameters(), other.model.parameters(), strict=True):
        torch.testing.assert_close(q, p, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(("name", "held"), [("floor +1 forward", 1), ("floor +1 forward+backward", 2)])
def test_a_floor_reading_once_keeps_x_t_for_the_next_step(name, held):
    """The read-once floors hold x_{t−1} (and a stand-in for ∇ℓ(x_{t−1}) with a backward), and copy x_t
    into x_{t−1} each step, as the probe's snapshot does."""
    contender = peers.Contender(name + peers.READ_ONCE, "tiny", "cpu")
    assert len(contender.read_once) == held
    for _ in range(2):
        before = [p.detach().clone() for p in contender.model.parameters()]
        contender.run(1)
        for kept, x in zip(contender.read_once[0], before, strict=True):
            torch.testing.assert_close(kept, x, rtol=0, atol=0)


def test_the_authors_loop_computes_their_convexity_gap():
    """Their gap at step t: f(w_t, z) − f(w_{t−1}, z) − ⟨∇f(w_t, z), w_t − w_{t−1}⟩, checked in float64."""
    contender = peers.Contender("authors' loop", "tiny", "cpu")
    model, batch = contender.model, contender.batch
    w_prev = [p.detach().double().clone() for p in model.parameters()]
    contender.authors.step(batch)  # w_0 → w_1; measures nothing yet
    w_now = [p.detach().double().clone() for p in model.parameters()]
    contender.authors.step(batch)  # measures at w_1 against w_0 (on the previous batch: the same one)
    double = peers.placed("tiny", "cpu", 0)[0].double()

    def loss_and_grad(point):
        with torch.no_grad():
            for p, v in zip(double.parameters(), point, strict=True):
                p.copy_(v)
        double.zero_grad()
        loss = loss_fn(double, (batch[0].double(), batch[1]))
        loss.backward()
        return loss.item(), [p.grad.clone() for p in double.parameters()]

    f_now, g_now = loss_and_grad(w_now)
    f_prev, _ = loss_and_grad(w_prev)
    triples = zip(g_now, w_now, w_prev, strict=True)
    linear = sum(torch.dot(g.flatten(), (a - b).flatten()).item() for g, a, b in triples)
    assert contender.authors.gap == pytest.approx(f_now - f_prev - linear, rel=1e-4, abs=1e-7)


def _peer_case():
    """A tiny float32 MLP with cross-entropy, and its exact Hessian in float64."""
    import curvature_peers

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3))
    x, y = torch.randn(32, 5), torch.randint(0, 3, (32,))
    model64 = [p.detach().double() for p in model.parameters()]
    shapes = [p.shape for p in model64]

    def loss(theta: torch.Tensor) -> torch.Tensor:
        parts, start = [], 0
        for shape in shapes:
            parts.append(theta[start : start + shape.numel()].reshape(shape))
            start += shape.numel()
        hidden = torch.tanh(x.double() @ parts[0].T + parts[1])
        return torch.nn.functional.cross_entropy(hidden @ parts[2].T + parts[3], y)

    h = torch.autograd.functional.hessian(loss, torch.cat([p.reshape(-1) for p in model64]))
    return curvature_peers, model, (x, y), h


@pytest.mark.parametrize("peer", ["ours", "pyhessian", "eigenthings", "curvlinops"])
def test_each_peers_top_eigenvalue_and_trace_are_the_exact_ones(peer):
    """The benchmark's adapters call each library right: λ_max to float32 precision at a tight setting, and a
    trace estimate within 5 standard deviations of Hutchinson's (exact variance 2 Σ_{i≠j} H_ij² / K)."""
    module = {"ours": "optprobe", "pyhessian": "pyhessian", "eigenthings": "hessian_eigenthings"}
    pytest.importorskip(module.get(peer, peer))
    cp, model, batch, h = _peer_case()
    top = {"ours": lambda: cp.ours_top(model, batch, 1e-7, 0),
           "pyhessian": lambda: cp.pyhessian_top(model, batch, 1e-8, 0),
           "eigenthings": lambda: cp.eigenthings_top(model, batch, 40, 0),
           "curvlinops": lambda: cp.curvlinops_top(model, batch, 0.0, 0)}[peer]  # fmt: skip
    trace = {"ours": lambda k: cp.ours_trace(model, batch, k, 0, plus=False),
             "pyhessian": lambda k: cp.pyhessian_trace(model, batch, k, 0),
             "eigenthings": lambda k: cp.eigenthings_trace(model, batch, k, 0),
             "curvlinops": lambda k: cp.curvlinops_trace(model, batch, k, 0, plus=False)}[peer]  # fmt: skip
    value, hvps = top()
    assert value == pytest.approx(float(torch.linalg.eigvalsh(h)[-1]), rel=2e-5)
    assert hvps >= 2
    estimate, hvps = trace(30)
    assert hvps == 30
    off_diagonal = float((h**2).sum() - (h.diagonal() ** 2).sum())
    assert abs(estimate - float(h.trace())) <= 5 * (2 * off_diagonal / 30) ** 0.5


@pytest.mark.parametrize(
    ("dots", "normed"),
    [
        ({("g", "dx_prev"), ("g", "g"), ("x", "x"), ("dx_prev", "dx_prev"), ("dg_prev", "dg_prev")}, "x"),
        ({("g", "g"), ("dg_prev", "x"), ("dg_prev", "dg_prev")}, "dx_prev"),  # a norm of a vector not in V
    ],
)
def test_the_gram_candidate_equals_the_per_dot_pass_to_float64_accuracy(dots, normed):
    """benchmarks/gram_reductions.py (V Vᵀ per chunk) against the library's one dot per pair, float64 model
    of several chunked tensors and small ones, per layer and in total: the timing compares equal work."""
    import gram_reductions

    import optprobe.reductions as library
    from optprobe.reductions import Workspace, layer_of

    shapes = {"a.weight": (400, 700), "a.bias": (400,), "b.weight": (300, 500), "c.weight": (10, 300)}
    assert sum(math.prod(s) > Workspace.chunk(torch.device("cpu")) for s in shapes.values()) == 2
    gen = torch.Generator().manual_seed(0)
    sources = {
        s: {n: torch.randn(shape, generator=gen, dtype=torch.float64) for n, shape in shapes.items()}
        for s in ("g", "x", "prev", "prev_grad")
    }
    names, layers = list(shapes), [layer_of(n) for n in shapes]
    results = []
    for module in (gram_reductions, library):
        reduction = module.Reduction(sources, dots, {normed}, {normed, "g"}, Workspace())
        for name in reversed(names):
            reduction.add(name, sources)
        results.append(reduction.result(names, layers))
    assert type(gram_reductions.Reduction(sources, dots, set(), set())) is not library.Reduction
    (gram_dots, gram_l1, gram_linf), (dot_dots, dot_l1, dot_linf) = results
    assert set(gram_dots) == set(dot_dots) == dots
    for got, want in [*((gram_dots[p], dot_dots[p]) for p in dots), (gram_l1[normed], dot_l1[normed])]:
        assert got.per_layer == pytest.approx(want.per_layer, rel=1e-13)
        assert got.total == pytest.approx(want.total, rel=1e-13)
    for v in (normed, "g"):
        assert (gram_linf[v].per_layer, gram_linf[v].total) == (dot_linf[v].per_layer, dot_linf[v].total)
