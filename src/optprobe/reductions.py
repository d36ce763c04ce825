"""Inner products, ℓ1 and ℓ∞ norms of the named step vectors, per layer, in one streaming pass.

Vectors (see :mod:`optprobe.metrics.base`) are built one parameter tensor at a time, so the pass
needs no parameter-sized buffer beyond the ones the Probe already holds: a difference such as
x_t − x_{t−1} is written into the storage of a ``scratch`` source (here x_{t−1}, which the caller no
longer needs) instead of a new tensor. All per-tensor results are stacked and copied to the host
once, which is a single device synchronisation per step.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from optprobe.metrics.base import LayerSums

Sources = Mapping[str, Mapping[str, Tensor]]
_SLICE = 1 << 20
# vector -> (minuend, subtrahend) sources, or a single source
_REQUIRES = {
    "g": ("g",),
    "x": ("x",),
    "dx_prev": ("x", "prev"),
    "dx_ref": ("x", "ref"),
    "dg_prev": ("g", "prev_grad"),
    "dg_ref": ("g", "ref_grad"),
}


def layer_of(name: str) -> str:
    """The layer a parameter belongs to: its name without the last component (``fc1.weight`` → ``fc1``)."""
    return name.rsplit(".", 1)[0] if "." in name else name


def available(vector: str, sources: Sources) -> bool:
    """Whether ``sources`` hold what ``vector`` is built from."""
    return all(source in sources for source in _REQUIRES[vector])


def reduce_vectors(
    sources: Sources,
    names: list[str],
    layers: list[str],
    dots: set[tuple[str, str]],
    l1: set[str],
    linf: set[str],
    scratch: frozenset[str] = frozenset(),
) -> tuple[dict[tuple[str, str], LayerSums], dict[str, LayerSums], dict[str, LayerSums]]:
    """Per-layer ⟨a, b⟩ for ``dots``, ‖a‖₁ for ``l1`` and ‖a‖∞ for ``linf``; skips what ``sources`` lack.

    Sources named in ``scratch`` may be overwritten (they hold a difference afterwards).
    """
    dots = {pair for pair in dots if available(pair[0], sources) and available(pair[1], sources)}
    l1 = {v for v in l1 if available(v, sources)}
    linf = {v for v in linf if available(v, sources)}
    keys = (
        [("dot", pair) for pair in sorted(dots)]
        + [("l1", v) for v in sorted(l1)]
        + [("linf", v) for v in sorted(linf)]
    )
    if not keys:
        return {}, {}, {}
    columns: list[Tensor] = []
    for name in names:
        cache: dict[str, Tensor] = {}

        def vec(v: str, name: str = name, cache: dict[str, Tensor] = cache) -> Tensor:
            if v not in cache:
                t = _build(v, sources, name, scratch)
                cache[v] = t.reshape(-1).to(torch.promote_types(t.dtype, torch.float32))
            return cache[v]

        row = []
        for kind, key in keys:
            if kind == "dot":
                row.append(torch.dot(vec(key[0]), vec(key[1])))
            elif kind == "l1":  # in slices: |v| of a whole large tensor would be a tensor-sized temporary
                row.append(sum(piece.abs().sum() for piece in vec(key).split(_SLICE)))
            elif vec(key).numel():  # aminmax is one fast pass; vector_norm(ord=inf) is ~20x slower on CPU
                low, high = torch.aminmax(vec(key))
                row.append(torch.maximum(-low, high))
            else:
                row.append(vec(key).new_zeros(()))
        columns.append(torch.stack([r.to(torch.float64) for r in row]))
    table = torch.stack(columns).cpu().tolist()  # one host copy: [tensor][key]
    unique_layers = list(dict.fromkeys(layers))
    position = {layer: i for i, layer in enumerate(unique_layers)}
    results: dict[str, dict] = {"dot": {}, "l1": {}, "linf": {}}
    for j, (kind, key) in enumerate(keys):
        per_layer = [0.0] * len(unique_layers)
        for i, layer in enumerate(layers):
            value = table[i][j]
            p = position[layer]
            per_layer[p] = max(per_layer[p], value) if kind == "linf" else per_layer[p] + value
        total = max(per_layer) if kind == "linf" else sum(per_layer)
        results[kind][key] = LayerSums(per_layer, total)
    return results["dot"], results["l1"], results["linf"]


def _build(vector: str, sources: Sources, name: str, scratch: frozenset[str]) -> Tensor:
    parts = _REQUIRES[vector]
    if len(parts) == 1:
        return sources[parts[0]][name]
    minuend, subtrahend = sources[parts[0]][name], sources[parts[1]][name]
    if parts[1] in scratch:
        return torch.sub(minuend, subtrahend, out=subtrahend)
    return minuend - subtrahend
