"""Compiled reductions (``ProbeConfig(compile_reductions=True)``) against float64 sums and the eager path."""

from __future__ import annotations

import math
import threading

import pytest
import torch
from conftest import train
from torch import nn

from optprobe import fused
from optprobe.probe import Probe, ProbeConfig
from optprobe.reductions import Reduction, Workspace, layer_of

SHAPES = {"a.weight": (300, 700), "a.bias": (300,), "b.weight": (5, 300)}  # a.weight: compiled; others eager
NAMES = list(SHAPES)
DOTS = {("g", "dx_prev"), ("g", "g"), ("x", "x"), ("dx_prev", "dx_prev"), ("dg_prev", "dg_prev")}


def _sources(dtype: torch.dtype) -> dict[str, dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    return {
        source: {n: torch.randn(shape, generator=g).to(dtype) for n, shape in SHAPES.items()}
        for source in ("g", "x", "prev", "prev_grad")
    }


def _vector(sources, vector: str, name: str, dtype: torch.dtype) -> torch.Tensor:
    """The vector as the probe builds it (a difference rounded to max(dtype, float32)), in float64."""
    wide = torch.promote_types(dtype, torch.float32)
    get = {s: sources[s][name].to(wide).reshape(-1) for s in sources}
    built = {"dx_prev": get["x"] - get["prev"], "dg_prev": get["g"] - get["prev_grad"], **get}
    return built[vector].double()


def _reduce(sources, workspace: Workspace):
    reduction = Reduction(sources, DOTS, l1={"g", "dx_prev"}, linf={"g", "dg_prev"}, workspace=workspace)
    for name in reversed(NAMES):
        reduction.add(name, sources)
    return reduction.result(NAMES, [layer_of(n) for n in NAMES])


@pytest.mark.parametrize(
    ("dtype", "rel"), [(torch.float64, 1e-12), (torch.float32, 1e-6), (torch.bfloat16, 1e-6)]
)
def test_compiled_sums_are_sums_of_the_same_vectors_to_their_dtype_s_accuracy(dtype, rel):
    """The large tensor's columns are sums of the vectors the eager path builds (in their dtype within rows
    of 4096 entries, the rows in float64): 1e-12 of the exact sums for float64, float32 accuracy (~1e-7,
    as the eager path) otherwise; a.weight's 210000 entries end in a partial row."""
    sources = _sources(dtype)
    dot_sums, l1, linf = _reduce(sources, Workspace(compiled=True, warn=pytest.fail))
    n = "a.weight"  # layer a holds a.weight (compiled) and a.bias (eager, float32 sums: its own tolerance)
    for a, b in DOTS:
        exact = float(_vector(sources, a, n, dtype) @ _vector(sources, b, n, dtype))
        bias = float(_vector(sources, a, "a.bias", dtype) @ _vector(sources, b, "a.bias", dtype))
        bias_tol = 0 if dtype == torch.float64 else 1e-6 * abs(bias) + 1e-6
        assert dot_sums[(a, b)].per_layer[0] == pytest.approx(exact + bias, rel=rel, abs=bias_tol)
    exact_l1 = float(_vector(sources, "dx_prev", n, dtype).abs().sum())
    bias_l1 = float(_vector(sources, "dx_prev", "a.bias", dtype).abs().sum())
    assert l1["dx_prev"].per_layer[0] == pytest.approx(exact_l1 + bias_l1, rel=max(rel, 1e-9))
    exact_max = max(float(_vector(sources, "dg_prev", m, dtype).abs().max()) for m in (n, "a.bias"))
    assert linf["dg_prev"].per_layer[0] == exact_max


def test_every_entry_of_a_compiled_tensor_counts_once():
    """Integer-valued float32 sources (every sum exact in float32): the whole blocks, reduced by the kernel,
    and the last partial block, reduced eagerly, add up to the exact sums and maxima, per layer."""
    shapes = {"a.weight": (5 * 4096 + 7,), "a.bias": (9,), "b.weight": (4 * 4096,)}
    g = torch.Generator().manual_seed(0)
    sources = {
        s: {n: torch.randint(-8, 9, shape, generator=g).float() for n, shape in shapes.items()}
        for s in ("g", "x", "prev")
    }
    sources["g"]["a.weight"][-1] = 100.0  # the maximum sits in the partial block
    names = list(shapes)
    workspace = Workspace(compiled=True, warn=pytest.fail)
    reduction = Reduction(sources, {("g", "dx_prev")}, {"g"}, {"g"}, workspace=workspace)
    for name in names:
        reduction.add(name, sources)
    dots, l1, linf = reduction.result(names, [layer_of(n) for n in names])
    for layer, members in {0: ("a.weight", "a.bias"), 1: ("b.weight",)}.items():
        g_ = [sources["g"][n].double() for n in members]
        dx = [(sources["x"][n] - sources["prev"][n]).double() for n in members]
        exact_dot = sum(float(a @ b) for a, b in zip(g_, dx, strict=True))
        assert dots[("g", "dx_prev")].per_layer[layer] == exact_dot
        assert l1["g"].per_layer[layer] == sum(float(a.abs().sum()) for a in g_)
        assert linf["g"].per_layer[layer] == max(float(a.abs().max()) for a in g_)
    assert linf["g"].per_layer[0] == 100.0


@pytest.mark.parametrize("bad", [math.inf, math.nan])
def test_compiled_non_finite_entries_propagate(bad):
    sources = _sources(torch.float32)
    sources["g"]["a.weight"][3, 5] = bad
    dot_sums, l1, linf = _reduce(sources, Workspace(compiled=True, warn=pytest.fail))
    for sums in (dot_sums[("g", "g")], l1["g"], linf["g"]):
        assert math.isnan(sums.per_layer[0]) if math.isnan(bad) else sums.per_layer[0] == math.inf
        assert math.isfinite(sums.per_layer[1])


def test_a_failed_compile_warns_once_and_reduces_eagerly(monkeypatch):
    real = fused.fused_kernel

    def broken(*columns):
        def kernel(*tensors):
            raise RuntimeError("no C++ compiler found\nmore detail")

        return kernel, real(*columns)[1]

    monkeypatch.setattr(fused, "fused_kernel", broken)
    messages: list[str] = []
    sources = _sources(torch.float64)
    workspace = Workspace(compiled=True, warn=messages.append)
    result = _reduce(sources, workspace)
    assert _reduce(sources, workspace) == result  # the next step: eager at once, no second warning
    assert not workspace.compiled
    assert messages == [
        "compile_reductions: torch.compile failed (RuntimeError: no C++ compiler found); using the eager "
        "reductions"
    ]
    assert result == _reduce(sources, Workspace())


def test_kernel_source_reads_each_source_once():
    source = fused.kernel_source([("dg_prev", "dg_prev"), ("g", "dx_prev")], ["g"], ["g"])
    assert source.splitlines()[0] == "def fused_reduction(g, prev, prev_grad, x):"
    assert "    v_dx_prev = _wide(x) - _wide(prev)" in source
    assert "v_g.abs().sum(1)]).double().sum(1)" in source
    assert "    maxima = torch.stack([v_g.abs().amax(1)]).double().amax(1)" in source
    assert source.rstrip().endswith("return torch.cat([sums, maxima])")


@pytest.mark.filterwarnings("error::optprobe.errors.ProbeWarning")  # a failed compile would pass silently
@pytest.mark.parametrize(("with_reference", "kernels"), [(False, 2), (True, 3)])
def test_a_probe_with_compiled_reductions_writes_the_eager_table(
    tmp_path, monkeypatch, with_reference, kernels
):
    """A float64 run, with and without x*: every column of the compiled run equals the eager run's to 1e-10.

    Kernels, one per set of columns: step 0's (no x_(t−1) yet: its first pass is at x*, if any), later
    steps' pass at x_(t−1) (with the x* columns that need no gradient at x*) and, with x*, its pass."""
    made: list[tuple] = []
    real = fused.fused_kernel
    monkeypatch.setattr(fused, "fused_kernel", lambda *columns: made.append(columns) or real(*columns))
    tables = {}
    for compiled in (False, True):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(512, 256), nn.Tanh(), nn.Linear(256, 3)).double()  # 131072: a chunk
        reference = nn.Sequential(nn.Linear(512, 256), nn.Tanh(), nn.Linear(256, 3)).double()
        reference = reference if with_reference else None
        data = [(torch.randn(16, 512, dtype=torch.float64), torch.randint(0, 3, (16,))) for _ in range(4)]
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        config = ProbeConfig(per_layer=True, compile_reductions=compiled)
        probe = Probe(model, _loss, optimizer=opt, config=config, reference=reference,
                      out_dir=tmp_path / str(compiled))  # fmt: skip
        train(model, _loss, data, opt, probe, epochs=2)
        tables[compiled] = probe.table()
    assert len(set(made)) == kernels
    eager, compiled_table = tables[False], tables[True]
    assert list(eager.columns) == list(compiled_table.columns) and len(eager) == 8
    numeric = eager.select_dtypes("number").columns
    assert any("_ref" in c for c in numeric) == with_reference
    for column in numeric:
        expected = pytest.approx(eager[column].to_numpy(), rel=1e-10, abs=1e-12, nan_ok=True)
        assert compiled_table[column].to_numpy() == expected, column


def _loss(model: nn.Module, batch) -> torch.Tensor:
    return nn.functional.cross_entropy(model(batch[0]), batch[1])


def test_a_kernel_compiles_and_runs_from_another_thread():
    """On CUDA, autograd calls the gradient hooks (and so the first compiled reduction) on a device thread."""
    kernel, sources = fused.fused_kernel((("g", "dx_prev"),), ("dx_prev",), ())
    g = torch.Generator().manual_seed(0)
    tensors = {s: torch.randn(1000, 200, generator=g, dtype=torch.float64) for s in sources}
    result: list[torch.Tensor] = []
    thread = threading.Thread(target=lambda: result.append(kernel(*(tensors[s] for s in sources))))
    thread.start()
    thread.join()
    dx = tensors["x"] - tensors["prev"]
    expected = torch.stack([(tensors["g"] * dx).sum(), dx.abs().sum()])
    torch.testing.assert_close(result[0], expected, rtol=1e-12, atol=0)


def test_tensors_of_any_shape_share_one_compiled_graph():
    """A conv kernel (4-d) after a matrix (2-d) reuses the kernel's graph: no compilation in the middle of
    a run (the compiler's memory would count in the step's peak)."""
    import torch._dynamo.utils as dynamo_utils

    shapes = {"conv.weight": (64, 32, 3, 3), "fc.weight": (256, 80), "fc2.weight": (90, 300)}
    g = torch.Generator().manual_seed(0)
    sources = {
        s: {n: torch.randn(shape, generator=g, dtype=torch.float64) for n, shape in shapes.items()}
        for s in ("g", "x")
    }
    workspace = Workspace(compiled=True, warn=pytest.fail)
    Reduction(sources, {("x", "x")}, {"g"}, set(), workspace).add("fc.weight", sources)  # compiles (2-d)
    dynamo_utils.counters.clear()
    reduction = Reduction(sources, {("x", "x")}, {"g"}, set(), workspace)
    for name in shapes:
        reduction.add(name, sources)
    assert not dynamo_utils.counters["stats"]["unique_graphs"]
    _, l1, _ = reduction.result(list(shapes), list(shapes))
    exact = float(sources["g"]["conv.weight"].abs().sum())
    assert l1["g"].per_layer[0] == pytest.approx(exact, rel=1e-12)


def test_a_reduced_tensor_with_a_partial_last_row_is_not_kept_alive():
    """The entries after the last whole row are held until their group is reduced, as a copy: the
    streamed gradient they came from is freed once ``add`` returns (one gradient alive at a time)."""
    import weakref

    sources = _sources(torch.float32)  # a.weight: 210000 entries, 51 whole rows and 1104 more
    grad = sources["g"]["a.weight"].clone()
    alive = weakref.ref(grad)
    reduction = Reduction(sources, DOTS, {"g"}, {"g"}, workspace=Workspace(compiled=True, warn=pytest.fail))
    reduction.add("a.weight", {**sources, "g": {**sources["g"], "a.weight": grad}})
    del grad
    assert alive() is None
    assert reduction._rows and reduction._held  # the kernel ran; the last partial row waits in a group
