"""Inner products, ℓ1 and ℓ∞ norms of the named step vectors, per layer, streamed tensor by tensor.

Vectors (see :mod:`optprobe.metrics.base`) are built chunk by chunk in a small reused buffer, so the
pass needs no parameter-sized temporary and reads each source once; a gradient can be reduced while
backward produces it. All per-tensor results are stacked and copied to the host once, which is a
single device synchronisation per step.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import Tensor

from optprobe.metrics.base import LayerSums

Sources = Mapping[str, Mapping[str, Tensor]]
Reduced = tuple[dict[tuple[str, str], LayerSums], dict[str, LayerSums], dict[str, LayerSums]]
_CHUNK_CPU = 1 << 17  # rows of 512 KiB: cache-resident, and a workspace of a few MiB
_CHUNK_CUDA = 1 << 22
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


def available(vector: str, sources: Iterable[str]) -> bool:
    """Whether the named ``sources`` hold what ``vector`` is built from."""
    return all(source in sources for source in _REQUIRES[vector])


class Workspace:
    """Cache-sized buffers reused by every call (one per dtype and device); keep one per Probe."""

    def __init__(self) -> None:
        self._buffers: dict[tuple[torch.dtype, torch.device], Tensor] = {}

    def rows(self, count: int, dtype: torch.dtype, device: torch.device) -> Tensor:
        """A (count, chunk) buffer; chunk is small enough for the rows to stay in cache on a CPU."""
        chunk = _CHUNK_CUDA if device.type == "cuda" else _CHUNK_CPU
        buffer = self._buffers.get((dtype, device))
        if buffer is None or buffer.shape[0] < count:
            buffer = self._buffers[(dtype, device)] = torch.empty(count, chunk, dtype=dtype, device=device)
        return buffer[:count]


class Reduction:
    """Per-layer ⟨a, b⟩ for ``dots``, ‖a‖₁ for ``l1`` and ‖a‖∞ for ``linf``, one parameter tensor at a time.

    ``sources`` names what will be available (pairs needing anything else are skipped). Tensors are
    added in any order, each with its sources, so a gradient can be reduced the moment backward
    produces it and then dropped. Each tensor is read chunk by chunk: the needed vectors (differences
    included) are built in a small buffer, and one Gram product of the buffer gives every inner
    product at once, so each source tensor crosses the memory bus once.
    """

    def __init__(
        self,
        sources: Iterable[str],
        dots: set[tuple[str, str]],
        l1: set[str],
        linf: set[str],
        workspace: Workspace | None = None,
    ) -> None:
        sources = set(sources)
        self.dots = {pair for pair in dots if available(pair[0], sources) and available(pair[1], sources)}
        self.l1 = sorted(v for v in l1 if available(v, sources))
        self.linf = sorted(v for v in linf if available(v, sources))
        self.vectors = sorted({v for pair in self.dots for v in pair} | set(self.l1) | set(self.linf))
        self.row = {v: i for i, v in enumerate(self.vectors)}
        self.workspace = workspace or Workspace()
        self._per_tensor: dict[str, Tensor] = {}

    def add(self, name: str, sources: Sources) -> None:
        """Reduce parameter tensor ``name``, reading ``sources[source][name]``."""
        if self.vectors:
            self._per_tensor[name] = _reduce_tensor(
                sources, name, self.vectors, self.row, self.l1, self.linf, self.workspace
            )

    def result(self, names: list[str], layers: list[str]) -> Reduced:
        """(dots, ℓ1 norms, ℓ∞ norms) per layer, for tensors ``names`` in ``layers``; one host copy."""
        if not self.vectors:
            return {}, {}, {}
        table = torch.stack([self._per_tensor[name] for name in names]).cpu()
        unique_layers = list(dict.fromkeys(layers))
        position = [unique_layers.index(layer) for layer in layers]
        k, row = len(self.vectors), self.row

        def gather(column: Tensor, reduce_max: bool) -> LayerSums:
            per_layer = [0.0] * len(unique_layers)
            for value, p in zip(column.tolist(), position, strict=True):
                per_layer[p] = max(per_layer[p], value) if reduce_max else per_layer[p] + value
            return LayerSums(per_layer, max(per_layer) if reduce_max else sum(per_layer))

        dot_sums = {(a, b): gather(table[:, row[a] * k + row[b]], False) for a, b in self.dots}
        l1_sums = {v: gather(table[:, k * k + i], False) for i, v in enumerate(self.l1)}
        offset = k * k + len(self.l1)
        linf_sums = {v: gather(table[:, offset + i], True) for i, v in enumerate(self.linf)}
        return dot_sums, l1_sums, linf_sums


def _reduce_tensor(
    sources: Sources, name: str, vectors: list[str], row: dict[str, int], l1: list[str], linf: list[str],
    workspace: Workspace,
) -> Tensor:  # fmt: skip
    """[Gram matrix of the vectors (flattened), their ℓ1 norms, their ℓ∞ norms] for one parameter tensor."""
    parts = {v: [sources[s][name].reshape(-1) for s in _REQUIRES[v]] for v in vectors}
    first = parts[vectors[0]][0]
    dtype = torch.promote_types(first.dtype, torch.float32)
    buffer = workspace.rows(len(vectors), dtype, first.device)
    chunk = buffer.shape[1]
    k = len(vectors)
    gram = torch.zeros(k, k, dtype=torch.float64, device=first.device)
    norms1 = torch.zeros(len(l1), dtype=torch.float64, device=first.device)
    norms_inf = torch.zeros(len(linf), dtype=torch.float64, device=first.device)
    for start in range(0, first.numel(), chunk):
        stop = min(start + chunk, first.numel())
        rows = buffer[:, : stop - start]
        for v in vectors:
            pieces = [t[start:stop] for t in parts[v]]
            if len(pieces) == 1:
                rows[row[v]].copy_(pieces[0])
            else:
                torch.sub(pieces[0], pieces[1], out=rows[row[v]])
        gram += (rows @ rows.T).double()
        for i, v in enumerate(l1):
            norms1[i] += rows[row[v]].abs().sum().double()
        for i, v in enumerate(linf):
            low, high = torch.aminmax(rows[row[v]])
            norms_inf[i] = torch.maximum(norms_inf[i], torch.maximum(-low, high).double())
    return torch.cat([gram.reshape(-1), norms1, norms_inf])
