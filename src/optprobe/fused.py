"""A step's reductions of one parameter tensor as one compiled kernel (``compile_reductions=True``).

The eager :class:`~optprobe.reductions.Reduction` builds each difference in a cache-sized buffer and runs
one kernel per inner product or norm. Here :func:`fused_kernel` writes, for one set of columns, a
function that computes all of them for one tensor, and ``torch.compile`` fuses it into one loop that
reads each source once and allocates nothing of the tensor's size. Vectors are built as the eager path
builds them (a difference in the sources' dtype widened to at least float32). A tensor is passed as rows
of :data:`~optprobe.reductions.COMPILED_BLOCK` entries: products and sums are taken in that dtype within
a row, the rows' partial sums are combined in float64. So a float32 tensor's columns are as accurate as
the eager path's (float32 inner products of a chunk, a few 1e-7 relative: ``benchmarks/reductions.py``);
float64 products throughout made the kernel about three times slower on a CPU.

Each set of columns gets a function (and so a code object) of its own, made once in a process:
torch.compile caches compiled code per code object, and a shared one would recompile whenever the
columns change. Only the number of rows varies, so one graph serves every shape; each further dtype or
device compiles once more, up to torch's recompile limit (8 per function: ``torch._dynamo.config``),
beyond which torch runs the function eagerly, with temporaries the size of each tensor.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from optprobe.reductions import VECTORS

Kernel = Callable[..., Tensor]


@functools.cache
def fused_kernel(
    dots: tuple[tuple[str, str], ...], l1: tuple[str, ...], linf: tuple[str, ...]
) -> tuple[Kernel, tuple[str, ...]]:
    """(kernel, its sources): ``kernel(*tensors)`` (per source, its rows of ``COMPILED_BLOCK`` entries)
    returns float64 [⟨a, b⟩ per pair of ``dots``, ‖a‖₁ per ``l1`` vector, ‖a‖∞ per ``linf`` vector],
    compiled; one per set of columns in a process (every Probe shares it)."""
    source = kernel_source(dots, l1, linf)
    namespace: dict[str, object] = {"torch": torch, "_wide": _wide}
    exec(compile(source, f"<optprobe fused reduction {dots} {l1} {linf}>", "exec"), namespace)  # noqa: S102
    sources = tuple(_sources(_vectors(dots, l1, linf)))
    return torch.compile(namespace["fused_reduction"], dynamic=True, fullgraph=True), sources  # type: ignore[arg-type]


def kernel_source(dots: Sequence[tuple[str, str]], l1: Sequence[str], linf: Sequence[str]) -> str:
    """The Python source of the kernel's function (before compilation), e.g. for the full set::

        def fused_reduction(g, prev, prev_grad, x):
            v_dg_prev = _wide(g) - _wide(prev_grad)
            ...
            sums = torch.stack([(v_dg_prev * v_dg_prev).sum(1), ..., v_g.abs().sum(1)]).double().sum(1)
            maxima = torch.stack([v_g.abs().amax(1)]).double().amax(1)
            return torch.cat([sums, maxima])
    """
    vectors = _vectors(dots, l1, linf)
    lines = [f"def fused_reduction({', '.join(_sources(vectors))}):"]
    for v in vectors:
        first, *rest = VECTORS[v].sources
        built = f"_wide({first}) - _wide({rest[0]})" if rest else f"_wide({first})"
        lines.append(f"    v_{v} = {built}")
    sums = [f"(v_{a} * v_{b}).sum(1)" for a, b in dots] + [f"v_{v}.abs().sum(1)" for v in l1]
    maxima = [f"v_{v}.abs().amax(1)" for v in linf]
    if sums:
        lines.append(f"    sums = torch.stack([{', '.join(sums)}]).double().sum(1)")
    if maxima:
        lines.append(f"    maxima = torch.stack([{', '.join(maxima)}]).double().amax(1)")
    parts = ["sums"] * bool(sums) + ["maxima"] * bool(maxima)
    lines.append(f"    return torch.cat([{', '.join(parts)}])")
    return "\n".join(lines) + "\n"


def _vectors(dots: Sequence[tuple[str, str]], l1: Sequence[str], linf: Sequence[str]) -> list[str]:
    return sorted({v for pair in dots for v in pair} | set(l1) | set(linf))


def _sources(vectors: Sequence[str]) -> list[str]:
    """The sources the vectors are built from, sorted: the kernel's parameters, in order."""
    return sorted({s for v in vectors for s in VECTORS[v].sources})


def _wide(tensor: Tensor) -> Tensor:
    """``tensor`` in at least float32 (a difference of bfloat16 tensors is taken in float32)."""
    return tensor.to(torch.promote_types(tensor.dtype, torch.float32))
