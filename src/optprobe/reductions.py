"""Inner products, ℓ1 and ℓ∞ norms of the named step vectors, per layer, streamed tensor by tensor.

The vectors a metric may name, and the points besides x_t they are built from, are the two tables
:data:`POINTS` and :data:`VECTORS` below: a new point or vector is one row. Vectors are built group by
group in a small reused buffer (a chunk of a large tensor, or several small tensors at once with
multi-tensor kernels), so the pass needs no parameter-sized temporary and reads each source once; a
gradient can be reduced while backward produces it. The per-layer results stay on the device until the
caller copies every scalar of the step to the host at once (a single device synchronisation per step).
"""

from __future__ import annotations

import itertools
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
Parts = dict[str, list[Tensor]]  # vector → its sources' (flat) pieces
Columns = tuple[tuple[tuple[str, str], ...], tuple[str, ...], tuple[str, ...]]  # (dots, l1, linf)
Reduced = tuple[dict[tuple[str, str], LayerSums], dict[str, LayerSums], dict[str, LayerSums]]
_CHUNK_CPU = 1 << 17  # rows of 512 KiB: cache-resident, and a workspace of a few MiB
_CHUNK_CUDA = 1 << 22
_COMPILED_FROM = 8  # compiled kernels reduce tensors of at least chunk / 8 entries, one call each
COMPILED_BLOCK = 4096  # compiled kernels sum rows of this many entries in float32 (at least), rows in float64


def layer_of(name: str) -> str:
    """The layer a parameter belongs to: its name without the last component (``fc1.weight`` → ``fc1``)."""
    return name.rsplit(".", 1)[0] if "." in name else name


def available(vector: str, sources: Iterable[str]) -> bool:
    """Whether the named ``sources`` hold what ``vector`` is built from."""
    return all(source in sources for source in VECTORS[vector].sources)


class Workspace:
    """Cache-sized buffers reused by every call (one per dtype and device); keep one per Probe.

    ``compiled``: reduce each tensor of at least an eighth of a chunk with one compiled kernel
    (:mod:`optprobe.fused`, compiled once per set of columns in a process); smaller ones, and the entries
    after a compiled tensor's last whole row, stay grouped.
    If compiling fails, ``warn`` is told why and this workspace uses the eager reduction from then on.
    """

    def __init__(self, compiled: bool = False, warn: Callable[[str], None] | None = None) -> None:
        self._buffers: dict[tuple[torch.dtype, torch.device], Tensor] = {}
        self._indices: dict[tuple[tuple[int, ...], torch.device], Tensor] = {}
        self.targets: dict[tuple[object, ...], tuple[Tensor, Tensor]] = {}  # Reduction.gathered, per layout
        self.compiled = compiled
        self._warn = warn

    def fused(self, columns: Columns, rows: Mapping[str, Tensor]) -> Tensor | None:
        """The columns of one tensor's ``rows`` (per source, shaped (rows, :data:`COMPILED_BLOCK`)) by
        their compiled kernel, in column order; None (use the eager reduction) when compiling has failed."""
        from optprobe.fused import fused_kernel  # imports torch's compiler: only when asked for

        kernel, kernel_sources = fused_kernel(*columns)
        tensors = [rows[s].detach() for s in kernel_sources]  # one compiled graph for any number of rows
        try:
            with torch.no_grad():
                return kernel(*tensors)
        except Exception as error:  # a missing compiler, an unsupported device: measure eagerly instead
            self.compiled = False
            if self._warn is not None:
                first_line = (str(error).strip().splitlines() or [""])[0]
                self._warn(
                    f"compile_reductions: torch.compile failed ({type(error).__name__}: {first_line}); using "
                    "the eager reductions"
                )
            return None

    @staticmethod
    def chunk(device: torch.device) -> int:
        """Elements per group: small enough for a CPU's cache, large enough for few kernels on a GPU."""
        return _CHUNK_CUDA if device.type == "cuda" else _CHUNK_CPU

    def rows(self, count: int, width: int, dtype: torch.dtype, device: torch.device) -> Tensor:
        """A (count, width) view of a buffer kept for later calls, grown when a call needs more (width ≤ a
        chunk: a model whose tensors are all small, or reduced by compiled kernels, holds less)."""
        buffer = self._buffers.get((dtype, device))
        if buffer is None or buffer.shape[0] < count or buffer.shape[1] < width:
            held = (0, 0) if buffer is None else buffer.shape
            buffer = torch.empty(max(count, held[0]), max(width, held[1]), dtype=dtype, device=device)
            self._buffers[(dtype, device)] = buffer
        return buffer[:count, :width]

    def index(self, values: list[int], device: torch.device) -> Tensor:
        """``values`` as an index tensor on ``device``, made once (a host-to-device copy can wait for the
        device): the layout of the pieces is the same at every step."""
        key = (tuple(values), device)
        if key not in self._indices:
            self._indices[key] = torch.tensor(values, dtype=torch.long, device=device)
        return self._indices[key]


class Reduction:
    """Per-layer ⟨a, b⟩ for ``dots``, ‖a‖₁ for ``l1`` and ‖a‖∞ for ``linf``, a group of elements at a time.

    ``sources`` names what will be available (pairs needing anything else are skipped). Tensors are
    added in any order, each with its sources, so a gradient can be reduced the moment backward
    produces it. A tensor of at least a chunk is reduced at once, chunk by chunk; smaller ones are held
    (with their sources) until they fill a chunk and are then reduced together, differences built for
    all of them by one multi-tensor kernel. With a compiled workspace (``compile_reductions``), each
    tensor of at least an eighth of a chunk is reduced by one compiled kernel instead, rows of 4096
    entries summed as a chunk is here, the rows' sums in float64 (:mod:`optprobe.fused`; the entries
    after the last whole row are held as a small tensor). Differences (and vectors of a dtype narrower
    than float32) are built in a small cache-resident buffer, every other vector is read in place; each
    inner product or norm of a chunk or small tensor is accumulated in its dtype (float32 at least), the
    pieces' sums in float64. Nothing parameter-sized is allocated (held gradients are at most a chunk:
    512 KiB of float32 on a CPU, 16 MiB on a GPU). With sharded tensors, ``over_ranks`` turns the per-rank
    partial sums and maxima into totals (one collective per point).
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
        self.columns: Columns = (tuple(self.dots), tuple(self.l1), tuple(self.linf))
        self._n_sums = len(self.dots) + len(self.l1)  # columns summed per layer; the ℓ∞ ones are maxima
        self._n_columns = self._n_sums + len(self.linf)
        self.workspace = workspace or Workspace()
        self.over_ranks = over_ranks
        self._normed = sorted(set(self.l1) | set(self.linf))
        self._sources = sorted({s for v in self.vectors for s in VECTORS[v].sources})
        self._held: list[tuple[str, Parts]] = []  # small tensors not reduced yet
        self._held_numel = 0
        self._values: list[Tensor] = []  # 0-d results of pieces (tensors or chunks), stacked once
        self._slots: list[tuple[int, str]] = []  # (column, tensor) of each value
        self._rows: list[Tensor] = []  # every column of one tensor at once (compiled kernels)
        self._row_owners: list[str] = []  # the tensor of each row

    def add(self, name: str, sources: Sources) -> None:
        """Reduce parameter tensor ``name``, reading ``sources[source][name]``."""
        if not self.vectors:
            return
        flat = {s: sources[s][name].reshape(-1) for s in self._sources}
        first = flat[self._sources[0]]
        numel, chunk = first.numel(), self.workspace.chunk(first.device)
        if self.workspace.compiled and numel >= chunk // _COMPILED_FROM:
            whole = numel - numel % COMPILED_BLOCK
            rows = {s: t[:whole].view(-1, COMPILED_BLOCK) for s, t in flat.items()}
            row = self.workspace.fused(self.columns, rows)
            if row is not None:
                self._keep_row(name, row)
                if whole == numel:
                    return
                # the last, partial row, reduced eagerly with a group: copied, so that a streamed
                # gradient is freed now, not when its group is reduced
                flat = {s: t[whole:].clone() for s, t in flat.items()}
                numel -= whole
        if numel >= chunk:
            self._reduce_large(name, flat, chunk)
            return
        parts = {v: [flat[s] for s in VECTORS[v].sources] for v in self.vectors}
        other_kind = bool(self._held) and _kind(self._held[-1][1]) != _kind(parts)
        if self._held_numel + _aligned(numel) > chunk or other_kind:  # a group: one dtype and device, a chunk
            self._flush()
        self._held.append((name, parts))
        self._held_numel += _aligned(numel)

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
        self._flush()
        n_layers, n_sums, n_columns = len(dict.fromkeys(layers)), self._n_sums, self._n_columns
        parts = ([torch.stack(self._values)] if self._values else []) + self._rows
        values = torch.cat(parts).double()  # stack and cat promote dtypes
        sum_at, max_at = self._targets(names, layers, values.device)
        # one scatter per kind (the other kind's values go to a last, unread slot); torch's sum and amax
        # propagate NaN (Python's max(0.0, nan) would drop it)
        slots = values.new_zeros(n_columns * n_layers + 1)
        sums = slots.scatter_reduce(0, sum_at, values, "sum", include_self=False)
        maxima = slots.scatter_reduce(0, max_at, values, "amax", include_self=False)
        split = n_sums * n_layers
        per_layer = torch.cat([sums[:split], maxima[split:-1]]).view(n_columns, n_layers)
        if self.over_ranks is not None:  # sharded tensors: the totals of every rank's partial results
            per_layer = self.over_ranks(per_layer.T, n_sums).T
        totals = torch.cat([per_layer[:n_sums].sum(1), per_layer[n_sums:].amax(1)])
        return torch.cat([per_layer, totals[:, None]], 1)

    def _targets(self, names: list[str], layers: list[str], device: torch.device) -> tuple[Tensor, Tensor]:
        """Where each held value goes in the flat (columns × layers) table: as a sum, as a maximum (a
        value of the other kind goes to the table's last, unread slot). Made once per layout."""
        n_sums, n_columns = self._n_sums, self._n_columns  # two layouts may differ only in n_sums
        key = (n_sums, tuple(self._slots), tuple(self._row_owners), tuple(names), tuple(layers), device)
        if key not in self.workspace.targets:
            position = {layer: i for i, layer in enumerate(dict.fromkeys(layers))}
            layer_of_name = {name: position[layer] for name, layer in zip(names, layers, strict=True)}
            n_layers = len(position)
            slots = self._slots + [(c, name) for name in self._row_owners for c in range(n_columns)]
            at = [column * n_layers + layer_of_name[name] for column, name in slots]
            unread = n_columns * n_layers
            sum_at = [a if column < n_sums else unread for a, (column, _) in zip(at, slots, strict=True)]
            max_at = [unread if column < n_sums else a for a, (column, _) in zip(at, slots, strict=True)]
            index = torch.tensor(sum_at + max_at, dtype=torch.long, device=device)
            self.workspace.targets[key] = (index[: len(slots)], index[len(slots) :])
        return self.workspace.targets[key]

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

    def _flush(self) -> None:
        if self._held:
            self._reduce_group(self._held)
            self._held, self._held_numel = [], 0

    def _reduce_group(self, group: list[tuple[str, Parts]]) -> None:
        """Hold [⟨a, b⟩ per pair, ‖a‖₁ per l1 vector, ‖a‖∞ per linf vector] of each piece of ``group``."""
        first = group[0][1][self.vectors[0]][0]
        dtype = torch.promote_types(first.dtype, torch.float32)
        sizes = [parts[self.vectors[0]][0].numel() for _, parts in group]
        built = [v for v in self.vectors if len(group[0][1][v]) > 1 or group[0][1][v][0].dtype != dtype]
        width = sum(_aligned(size) for size in sizes)
        rows = self.workspace.rows(len(built) + bool(self._normed), width, dtype, first.device).unbind()
        vectors = {v: [parts[v][0] for _, parts in group] for v in self.vectors}
        for v, row in zip(built, rows, strict=False):
            vectors[v] = _built(row, sizes, [parts[v] for _, parts in group])
        names, flat = [name for name, _ in group], rows[-1] if self._normed else None
        self._hold_columns(names, vectors, sizes, flat, dict(zip(built, rows, strict=False)))

    def _reduce_large(self, name: str, sources: dict[str, Tensor], chunk: int) -> None:
        """Hold the columns of each chunk of tensor ``name`` (flat ``sources``, at least a chunk long).

        Which vectors are built, and in which row of the workspace, is decided once for the tensor; each
        source is sliced once per chunk (a difference of sources in the row's dtype: one kernel).
        """
        first = sources[self._sources[0]]
        dtype = torch.promote_types(first.dtype, torch.float32)
        built = [v for v in self.vectors if len(VECTORS[v].sources) > 1 or _read(sources, v).dtype != dtype]
        rows = self.workspace.rows(len(built) + bool(self._normed), chunk, dtype, first.device).unbind()
        numel = first.numel()
        for start in range(0, numel, chunk):
            size = min(chunk, numel - start)
            piece = {s: tensor[start : start + size] for s, tensor in sources.items()}
            vectors = {v: [_read(piece, v)] for v in self.vectors}
            for v, row in zip(built, rows, strict=False):
                vectors[v] = [_difference(row[:size], *(piece[s] for s in VECTORS[v].sources))]
            self._hold_columns([name], vectors, [size], rows[-1] if self._normed else None, {})

    def _hold_columns(
        self, names: list[str], vectors: dict[str, list[Tensor]], sizes: list[int], flat: Tensor | None,
        row_of: dict[str, Tensor],
    ) -> None:  # fmt: skip
        """Hold the columns of pieces ``names`` (of ``sizes``; ``vectors[v]``: one piece per name), |a| taken
        in the spare row ``flat`` (None without norms); ``row_of``: the aligned row of a built vector."""
        for column, (a, b) in enumerate(self.dots):
            self._keep(column, names, [torch.dot(x, y) for x, y in zip(vectors[a], vectors[b], strict=True)])
        if flat is None:  # no norms, no spare row
            return
        for v in self._normed:  # |a| once, then its sum and max (vector_norm is 3-10x slower on CPU)
            if v in row_of:  # the row and flat have the same (aligned) length
                torch.abs(row_of[v], out=flat)
            elif len(names) == 1:  # out= of the piece's own size: torch deprecates resizing a non-empty out
                torch.abs(vectors[v][0], out=flat[: sizes[0]])
            else:
                torch._foreach_copy_(_views(flat, sizes), vectors[v])
                flat.abs_()
            magnitude = _views(flat, sizes)
            if v in self.l1:
                self._keep(len(self.dots) + self.l1.index(v), names, [m.sum() for m in magnitude])
            if v in self.linf:
                maxima = [m.amax() if m.numel() else m.new_zeros(()) for m in magnitude]
                self._keep(self._n_sums + self.linf.index(v), names, maxima)

    def _keep(self, column: int, names: list[str], values: list[Tensor]) -> None:
        """Hold column ``column``'s values (0-d tensors) of tensors (or chunks of tensors) ``names``."""
        self._values += values
        self._slots += [(column, name) for name in names]

    def _keep_row(self, name: str, row: Tensor) -> None:
        """Hold every column of tensor ``name`` at once: ``row`` holds them in column order."""
        self._rows.append(row)
        self._row_owners.append(name)


def _aligned(numel: int) -> int:
    """``numel`` rounded up to 16 elements (64 bytes of float32): where the next piece of a row starts."""
    return -(-numel // 16) * 16


def _views(row: Tensor, sizes: list[int]) -> list[Tensor]:
    """Consecutive pieces of ``row``, each starting where a tensor of its own would (a kernel's result
    depends on the alignment of its operands: so each piece reduces exactly as the tensor alone)."""
    if len(sizes) == 1:
        return [row[: sizes[0]]]
    starts = itertools.accumulate((_aligned(size) for size in sizes[:-1]), initial=0)
    return [row[start : start + size] for start, size in zip(starts, sizes, strict=True)]


def _kind(parts: Parts) -> list[tuple[torch.dtype, torch.device]]:
    """The dtypes and devices of a tensor's sources, which decide how a group reads them."""
    return [(p.dtype, p.device) for pieces in parts.values() for p in pieces]


def _read(sources: Mapping[str, Tensor], vector: str) -> Tensor:
    """The first source ``vector`` is built from (its dtype decides whether it is read in place)."""
    return sources[VECTORS[vector].sources[0]]


def _difference(row: Tensor, first: Tensor, second: Tensor | None = None) -> Tensor:
    """``row`` ← ``first`` (− ``second``) in ``row``'s dtype (a difference of bfloat16 tensors in float32)."""
    if second is not None and first.dtype == row.dtype:
        return torch.sub(first, second, out=row)  # one kernel
    row.copy_(first)
    return row if second is None else row.sub_(second)


def _built(row: Tensor, sizes: list[int], sources: list[list[Tensor]]) -> list[Tensor]:
    """Pieces ``sources[i][0]`` (− ``sources[i][1]``) written into consecutive views of ``row``, widened to
    its dtype first (a difference of bfloat16 tensors is taken in float32); multi-tensor kernels."""
    views = _views(row, sizes)
    if len(views) == 1:
        return [_difference(views[0], *sources[0])]
    torch._foreach_copy_(views, [s[0] for s in sources])
    if len(sources[0]) > 1:
        torch._foreach_sub_(views, [s[1] for s in sources])
    return views
