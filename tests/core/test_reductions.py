"""Streamed per-layer reductions against float64 sums over whole vectors."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from optprobe.reductions import Reduction, Workspace, layer_of

SHAPES = {"a.weight": (300, 700), "a.bias": (300,), "b.weight": (5, 300)}  # 210k entries: several chunks


def _sources(dtype: torch.dtype) -> dict[str, dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    return {
        source: {n: torch.randn(shape, generator=g).to(dtype) for n, shape in SHAPES.items()}
        for source in ("g", "x", "prev", "prev_grad")
    }


def _vector(sources, vector: str, name: str) -> torch.Tensor:
    get = {s: sources[s][name].double().reshape(-1) for s in sources}
    return {
        "g": get["g"],
        "x": get["x"],
        "dx_prev": get["x"] - get["prev"],
        "dg_prev": get["g"] - get["prev_grad"],
    }[vector]


@pytest.mark.parametrize(
    ("dtype", "rtol"), [(torch.float64, 1e-12), (torch.float32, 1e-5), (torch.bfloat16, 1e-5)]
)
def test_dots_and_norms_per_layer_match_float64(dtype, rtol):
    sources = _sources(dtype)
    dots = {("g", "dx_prev"), ("g", "g"), ("dx_prev", "dx_prev"), ("dg_prev", "dg_prev"), ("dx_ref", "g")}
    reduction = Reduction(sources, dots, l1={"g", "dx_prev"}, linf={"g", "dg_prev"}, workspace=Workspace())
    names = list(SHAPES)
    for name in reversed(names):  # any order, as backward produces gradients
        reduction.add(name, sources)
    dot_sums, l1, linf = reduction.result(names, [layer_of(n) for n in names])
    assert ("dx_ref", "g") not in dot_sums  # no reference among the sources: skipped
    for layer_index, layer in enumerate(["a", "b"]):
        members = [n for n in names if layer_of(n) == layer]
        for a, b in dots - {("dx_ref", "g")}:
            exact = sum(float(_vector(sources, a, n) @ _vector(sources, b, n)) for n in members)
            assert dot_sums[(a, b)].per_layer[layer_index] == pytest.approx(exact, rel=rtol)
        for v in ("g", "dx_prev"):
            exact = sum(float(_vector(sources, v, n).abs().sum()) for n in members)
            assert l1[v].per_layer[layer_index] == pytest.approx(exact, rel=rtol)
        for v in ("g", "dg_prev"):
            exact = max(float(_vector(sources, v, n).abs().max()) for n in members)
            assert linf[v].per_layer[layer_index] == pytest.approx(exact, rel=rtol)
    total = sum(float(_vector(sources, "g", n) @ _vector(sources, "dx_prev", n)) for n in names)
    assert dot_sums[("g", "dx_prev")].total == pytest.approx(total, rel=rtol * 10)
    assert linf["g"].total == max(linf["g"].per_layer)


@pytest.mark.parametrize("bad", [math.inf, math.nan])
def test_non_finite_entries_propagate(bad):
    sources = _sources(torch.float32)
    sources["g"]["a.bias"][3] = bad
    reduction = Reduction(sources, {("g", "g")}, l1={"g"}, linf={"g"})
    for name in SHAPES:
        reduction.add(name, sources)
    dot_sums, l1, linf = reduction.result(list(SHAPES), [layer_of(n) for n in SHAPES])
    for sums in (dot_sums[("g", "g")], l1["g"], linf["g"]):
        assert math.isnan(sums.total) if math.isnan(bad) else sums.total == math.inf
        assert math.isnan(sums.per_layer[0]) if math.isnan(bad) else sums.per_layer[0] == math.inf
        assert math.isfinite(sums.per_layer[1])  # the other layer keeps its value


def test_small_tensors_reduced_together_keep_their_own_dtypes_and_layers():
    """Many small tensors (several groups of a chunk), bfloat16 beside float32: each read as its own dtype
    (a bfloat16 difference taken in float32), each sum in its own layer."""
    g = torch.Generator().manual_seed(1)
    names = [f"l{i // 2}.{'weight' if i % 2 else 'bias'}" for i in range(48)]
    dtypes = {n: torch.bfloat16 if i % 3 == 0 else torch.float32 for i, n in enumerate(names)}
    sources = {
        source: {n: torch.randn(50, 100, generator=g).to(dtypes[n]) for n in names}
        for source in ("g", "x", "prev", "prev_grad")
    }
    layers = [layer_of(n) for n in names]
    reduction = Reduction(sources, {("g", "dx_prev"), ("x", "x")}, l1={"dx_prev"}, linf={"g"})
    for name in names:
        reduction.add(name, sources)
    dot_sums, l1, linf = reduction.result(names, layers)
    for index, layer in enumerate(dict.fromkeys(layers)):
        members = [n for n in names if layer_of(n) == layer]
        exact = sum(float(_vector(sources, "g", n) @ _vector(sources, "dx_prev", n)) for n in members)
        assert dot_sums[("g", "dx_prev")].per_layer[index] == pytest.approx(exact, rel=1e-5)
        exact = sum(float(_vector(sources, "x", n) @ _vector(sources, "x", n)) for n in members)
        assert dot_sums[("x", "x")].per_layer[index] == pytest.approx(exact, rel=1e-5)
        exact = sum(float(_vector(sources, "dx_prev", n).abs().sum()) for n in members)
        assert l1["dx_prev"].per_layer[index] == pytest.approx(exact, rel=1e-5)
        assert linf["g"].per_layer[index] == max(float(_vector(sources, "g", n).abs().max()) for n in members)


@pytest.mark.parametrize("numel", [6, 70_001])  # a lone small tensor; a large one's last, short chunk
def test_a_norm_of_a_lone_piece_resizes_no_output(numel):
    """‖a‖₁ and ‖a‖∞ of a group of one piece whose size is no multiple of 16 write |a| into a view of that
    size: torch deprecates resizing a non-empty out= tensor (a warning now, refused by a later release)."""
    g = {"w": torch.randn(Workspace.chunk(torch.device("cpu")) * (numel > 1000) + numel, dtype=torch.float64)}
    reduction = Reduction({"g"}, set(), {"g"}, {"g"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        reduction.add("w", {"g": g})
        _, l1, linf = reduction.result(["w"], ["w"])
    assert l1["g"].total == pytest.approx(float(g["w"].abs().sum()), rel=1e-12)
    assert linf["g"].total == float(g["w"].abs().max())


def test_reductions_sharing_a_workspace_keep_their_own_sums_and_maxima():
    """Two reductions of the same tensors with as many columns, split differently between sums and maxima
    (a pass at x_(t-1) and one at x*, say), each gather their own table from one Workspace."""
    sources = _sources(torch.float32)
    names = list(SHAPES)
    layers = [layer_of(n) for n in names]
    workspace = Workspace()
    tables = []
    for dots, linf in (({("g", "g"), ("x", "x")}, {"g"}), ({("g", "g")}, {"g", "x"})):
        reduction = Reduction(sources, dots, set(), linf, workspace=workspace)
        reduction.add_all(names, sources)
        tables.append(reduction.result(names, layers))
    (dots_a, _, linf_a), (dots_b, _, linf_b) = tables
    for name_index, layer in enumerate(["a", "b"]):
        members = [n for n in names if layer_of(n) == layer]
        assert linf_b["x"].per_layer[name_index] == max(float(sources["x"][n].abs().max()) for n in members)
        exact = sum(float(sources["x"][n].double().square().sum()) for n in members)
        assert dots_a[("x", "x")].per_layer[name_index] == pytest.approx(exact, rel=1e-5)
    assert linf_a["g"].total == linf_b["g"].total
