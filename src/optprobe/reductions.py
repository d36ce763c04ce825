"""Inner products, ℓ1 and ℓ∞ norms of the named step vectors, per layer, streamed tensor by tensor.

The vectors a metric may name, and the points besides x_t they are built from, are the two tables
:data:`POINTS` and :data:`VECTORS` below: a new point or vector is one row. Vectors are built chunk by
chunk in a small reused buffer, so the pass needs no parameter-sized temporary and reads each source
once; a gradient can be reduced while backward produces it. All per-tensor results are stacked and
copied to the host once, which is a single device synchronisation per step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from optprobe.errors import OptprobeError


@dataclass(frozen=True)
class Point:
    """A parameter point besides x_t, and how the Probe holds it.

    kept: "lagged" — x_{t−lag}, copied at the end of step t−lag when step t will be measured, saved in
    checkpoints; "first" — x at the Probe's first step, copied once and saved in checkpoints; "given" — the
    user's reference, passed to the Probe (never saved: it comes with the Probe's arguments).
    own_buffers: passes at this point use the buffers it came with (x*'s BatchNorm statistics).
    """

    symbol: str
    kept: str
    lag: int = 0
    own_buffers: bool = False


@dataclass(frozen=True)
class Vector:
    """A step vector: one source, or the difference of two (see :func:`gradient_source`)."""

    symbol: str
    sources: tuple[str, ...]

    @property
    def points(self) -> tuple[str, ...]:
        """The points (rows of :data:`POINTS`) this vector reads, parameters or gradients."""
        return tuple(_POINT_OF[s] for s in self.sources if s in _POINT_OF)

    @property
    def grad_at(self) -> str | None:
        """The point whose gradient ∇ℓ(point, z_t) this vector reads (a pass there streams it), if any."""
        return next((_POINT_OF[s] for s in self.sources if s in _GRADIENTS), None)


POINTS: dict[str, Point] = {
    "prev": Point("x_{t−1}", "lagged", lag=1),
    "prev2": Point("x_{t−2}", "lagged", lag=2),
    "init": Point("x_0", "first"),
    "ref": Point("x*", "given", own_buffers=True),
}


def gradient_source(point: str) -> str:
    """The source name of ∇ℓ(point, z_t), streamed by the pass at ``point``."""
    return f"{point}_grad"


_GRADIENTS = {gradient_source(p): p for p in POINTS}
_POINT_OF = {**{p: p for p in POINTS}, **_GRADIENTS}

VECTORS: dict[str, Vector] = {
    "g": Vector("g_t = ∇ℓ(x_t, z_t), the training gradient", ("g",)),
    "x": Vector("x_t", ("x",)),
    "dx_prev": Vector("Δ_t = x_t − x_{t−1}", ("x", "prev")),
    "prev_dx": Vector("Δ_{t−1} = x_{t−1} − x_{t−2}", ("prev", "prev2")),
    "dx_ref": Vector("x_t − x*", ("x", "ref")),
    "dx_init": Vector("x_t − x_0", ("x", "init")),
    "dg_prev": Vector("g_t − ∇ℓ(x_{t−1}, z_t)", ("g", gradient_source("prev"))),
    "dg_ref": Vector("g_t − ∇ℓ(x*, z_t)", ("g", gradient_source("ref"))),
}


def check_vectors(names: Iterable[str], owner: str) -> None:
    """Raise an :class:`OptprobeError` listing the known vectors if ``owner`` names an unknown one."""
    _check_known(names, VECTORS, "vector", owner)


def check_points(names: Iterable[str], owner: str) -> None:
    """Raise an :class:`OptprobeError` listing the known points if ``owner`` names an unknown one."""
    _check_known(names, POINTS, "point", owner)


def _check_known(names: Iterable[str], table: Mapping[str, Point | Vector], kind: str, owner: str) -> None:
    unknown = sorted(set(names) - set(table))
    if unknown:
        raise OptprobeError(
            f"{owner} names unknown {kind}(s) {', '.join(map(repr, unknown))}; known {kind}s: "
            + ", ".join(f"{name} ({row.symbol})" for name, row in table.items())
        )


@dataclass
class LayerSums:
    """A reduction of one vector pair, per layer (ordered like ``StepData.layers``) and in total."""

    per_layer: list[float]
    total: float


Sources = Mapping[str, Mapping[str, Tensor]]
Reduced = tuple[dict[tuple[str, str], LayerSums], dict[str, LayerSums], dict[str, LayerSums]]
_CHUNK_CPU = 1 << 17  # rows of 512 KiB: cache-resident, and a workspace of a few MiB
_CHUNK_CUDA = 1 << 22


def layer_of(name: str) -> str:
    """The layer a parameter belongs to: its name without the last component (``fc1.weight`` → ``fc1``)."""
    return name.rsplit(".", 1)[0] if "." in name else name


def available(vector: str, sources: Iterable[str]) -> bool:
    """Whether the named ``sources`` hold what ``vector`` is built from."""
    return all(source in sources for source in VECTORS[vector].sources)


class Workspace:
    """Cache-sized buffers reused by every call (one per dtype and device); keep one per Probe."""

    def __init__(self) -> None:
        self._buffers: dict[tuple[torch.dtype, torch.device], Tensor] = {}
        self._positions: dict[tuple[tuple[str, ...], torch.device], Tensor] = {}

    def positions(self, layers: list[str], device: torch.device) -> Tensor:
        """Each tensor's layer index (first-seen order), on ``device``: made once, not copied every step."""
        key = (tuple(layers), device)
        if key not in self._positions:
            unique = list(dict.fromkeys(layers))
            self._positions[key] = torch.tensor([unique.index(layer) for layer in layers], device=device)
        return self._positions[key]

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
    produces it and then dropped. Each tensor is read chunk by chunk: differences (and vectors of a
    dtype narrower than float32) are built in a small cache-resident buffer, every other vector is read
    in place, and each inner product or norm is one kernel writing into a per-chunk table, so each source
    tensor crosses the memory bus once and nothing parameter-sized is allocated. With sharded tensors,
    ``over_ranks`` turns the per-rank partial sums and maxima into totals (one collective per point).
    """

    def __init__(
        self,
        sources: Iterable[str],
        dots: set[tuple[str, str]],
        l1: set[str],
        linf: set[str],
        workspace: Workspace | None = None,
        over_ranks: Callable[[Tensor, int], Tensor] | None = None,
    ) -> None:
        sources = set(sources)
        self.dots = sorted(
            pair for pair in dots if available(pair[0], sources) and available(pair[1], sources)
        )
        self.l1 = sorted(v for v in l1 if available(v, sources))
        self.linf = sorted(v for v in linf if available(v, sources))
        self.vectors = sorted({v for pair in self.dots for v in pair} | set(self.l1) | set(self.linf))
        self.workspace = workspace or Workspace()
        self.over_ranks = over_ranks
        self._per_tensor: dict[str, Tensor] = {}

    def add(self, name: str, sources: Sources) -> None:
        """Reduce parameter tensor ``name``, reading ``sources[source][name]``."""
        if self.vectors:
            self._per_tensor[name] = self._reduce_tensor(name, sources)

    def add_all(self, names: list[str], sources: Sources) -> None:
        """Reduce every tensor of ``names`` (all sources at hand: no gradient is streamed)."""
        for name in names:
            self.add(name, sources)

    def result(self, names: list[str], layers: list[str]) -> Reduced:
        """(dots, ℓ1 norms, ℓ∞ norms) per layer, for tensors ``names`` in ``layers``; one host copy."""
        table = self.gathered(names, layers)
        return self.unpack([] if table is None else table.tolist())

    def gathered(self, names: list[str], layers: list[str]) -> Tensor | None:
        """Every column's per-layer values and total, float64 on the tensors' device, shaped (columns,
        layers + 1); None when nothing is reduced. Nothing is copied to the host (no device sync)."""
        if not self.vectors:
            return None
        table = torch.stack([self._per_tensor[name] for name in names])
        if self.over_ranks is not None:  # sharded tensors: the totals of every rank's partial results
            table = self.over_ranks(table, len(self.dots) + len(self.l1))
        columns = table.T.contiguous()  # one row per column: the same 1-d reductions as column by column
        position = self.workspace.positions(layers, table.device)[None].expand_as(columns)
        n_sums = len(self.dots) + len(self.l1)
        shape = (columns.shape[0], len(dict.fromkeys(layers)))
        # torch's sum and amax propagate NaN (Python's max(0.0, nan) would drop it)
        sums = columns.new_zeros(shape).scatter_reduce(1, position, columns, "sum", include_self=False)
        maxima = columns.new_zeros(shape).scatter_reduce(1, position, columns, "amax", include_self=False)
        per_layer = torch.cat([sums[:n_sums], maxima[n_sums:]])
        totals = torch.cat([per_layer[:n_sums].sum(1), per_layer[n_sums:].amax(1)])
        return torch.cat([per_layer, totals[:, None]], 1)

    def unpack(self, values: list[list[float]]) -> Reduced:
        """:meth:`gathered`'s table, copied to the host as lists, as (dots, ℓ1 norms, ℓ∞ norms)."""
        rows = iter(values)

        def sums() -> LayerSums:
            *per_layer, total = next(rows)
            return LayerSums(per_layer, total)

        dot_sums = {pair: sums() for pair in self.dots}
        l1_sums = {v: sums() for v in self.l1}
        linf_sums = {v: sums() for v in self.linf}
        return dot_sums, l1_sums, linf_sums

    def _reduce_tensor(self, name: str, sources: Sources) -> Tensor:
        """[⟨a, b⟩ per pair, ‖a‖₁ per l1 vector, ‖a‖∞ per linf vector] of one parameter tensor, float64."""
        parts = {v: [sources[s][name].reshape(-1) for s in VECTORS[v].sources] for v in self.vectors}
        first = parts[self.vectors[0]][0]
        dtype = torch.promote_types(first.dtype, torch.float32)
        built = [v for v in self.vectors if len(parts[v]) > 1 or parts[v][0].dtype != dtype]
        normed = sorted(set(self.l1) | set(self.linf))
        buffer = self.workspace.rows(len(built) + bool(normed), dtype, first.device)
        chunk = buffer.shape[1]
        n_sums = len(self.dots) + len(self.l1)
        l1_col = {v: len(self.dots) + i for i, v in enumerate(self.l1)}
        linf_col = {v: n_sums + i for i, v in enumerate(self.linf)}
        chunks = max(1, -(-first.numel() // chunk))  # an empty shard (FSDP) gives one row of zeros
        partial = torch.zeros(chunks, n_sums + len(self.linf), dtype=dtype, device=first.device)
        for c, start in enumerate(range(0, first.numel(), chunk)):
            stop = min(start + chunk, first.numel())
            chunk_of = {v: parts[v][0][start:stop] for v in self.vectors}
            for v, row in zip(built, buffer[: len(built)], strict=True):
                row = row[: stop - start]
                if len(parts[v]) > 1 and chunk_of[v].dtype == dtype:
                    torch.sub(chunk_of[v], parts[v][1][start:stop], out=row)
                else:  # widened first, so a difference of bfloat16 tensors is taken in float32
                    row.copy_(chunk_of[v])
                    if len(parts[v]) > 1:
                        row.sub_(parts[v][1][start:stop])
                chunk_of[v] = row
            out = partial[c]
            for j, (a, b) in enumerate(self.dots):
                torch.dot(chunk_of[a], chunk_of[b], out=out[j])
            for v in normed:  # |a| once, then its sum and max (vector_norm is 3-10x slower on CPU)
                magnitude = torch.abs(chunk_of[v], out=buffer[-1, : stop - start])
                if v in l1_col:
                    torch.sum(magnitude, 0, out=out[l1_col[v]])
                if v in linf_col:
                    torch.amax(magnitude, 0, out=out[linf_col[v]])
        return torch.cat(
            [partial[:, :n_sums].sum(0, dtype=torch.float64), partial[:, n_sums:].amax(0).double()]
        )
