"""A step's reductions of one parameter tensor as one compiled kernel (``compile_reductions=True``).

The eager :class:`~optprobe.reductions.Reduction` builds each difference in a cache-sized buffer and runs
one kernel per inner product or norm. Here :func:`fused_kernel` writes, for one set of columns, a
function that computes all of them for one tensor, and ``torch.compile`` fuses it into one loop that
reads each source once and allocates nothing of the tensor's size. Vectors are built as the eager path
builds them (a difference in the sources' dtype widened to at least float32); products and sums are taken
in float64, so each column of a float32 tensor is the float64 reduction of the same float32 vector.

Each set of columns gets a function (and so a code object) of its own, made once in a process:
torch.compile caches compiled code per code object, and a shared one would recompile whenever the
columns change. Tensors are passed flat, so one graph serves every shape; each further dtype or device
compiles once more, up to torch's recompile limit (8 per function: ``torch._dynamo.config``), beyond
which torch runs the function eagerly, with float64 temporaries the size of each tensor.
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
    """(kernel, its sources): ``kernel(*tensors)`` (one tensor per source, same shape) returns float64
    [⟨a, b⟩ per pair of ``dots``, ‖a‖₁ per ``l1`` vector, ‖a‖∞ per ``linf`` vector], compiled; one per
    set of columns in a process (every Probe shares it)."""
    source = kernel_source(dots, l1, linf)
    namespace: dict[str, object] = {"torch": torch, "_wide": _wide}
    exec(compile(source, f"<optprobe fused reduction {dots} {l1} {linf}>", "exec"), namespace)  # noqa: S102
    sources = tuple(_sources(_vectors(dots, l1, linf)))
    return torch.compile(namespace["fused_reduction"], dynamic=True, fullgraph=True), sources  # type: ignore[arg-type]


def kernel_source(dots: Sequence[tuple[str, str]], l1: Sequence[str], linf: Sequence[str]) -> str:
    """The Python source of the kernel's function (before compilation), e.g. for the full set::

        def fused_reduction(g, prev, prev_grad, x):
            v_dg_prev = (_wide(g) - _wide(prev_grad)).double()
            ...
            return torch.stack([(v_dg_prev * v_dg_prev).sum(), ..., v_g.abs().amax()])
    """
    vectors = _vectors(dots, l1, linf)
    lines = [f"def fused_reduction({', '.join(_sources(vectors))}):"]
    for v in vectors:
        first, *rest = VECTORS[v].sources
        built = f"_wide({first}) - _wide({rest[0]})" if rest else f"_wide({first})"
        lines.append(f"    v_{v} = ({built}).double()")
    columns = [f"(v_{a} * v_{b}).sum()" for a, b in dots]
    columns += [f"v_{v}.abs().sum()" for v in l1] + [f"v_{v}.abs().amax()" for v in linf]
    lines.append(f"    return torch.stack([{', '.join(columns)}])")
    return "\n".join(lines) + "\n"


def _vectors(dots: Sequence[tuple[str, str]], l1: Sequence[str], linf: Sequence[str]) -> list[str]:
    return sorted({v for pair in dots for v in pair} | set(l1) | set(linf))


def _sources(vectors: Sequence[str]) -> list[str]:
    """The sources the vectors are built from, sorted: the kernel's parameters, in order."""
    return sorted({s for v in vectors for s in VECTORS[v].sources})


def _wide(tensor: Tensor) -> Tensor:
    """``tensor`` in at least float32 (a difference of bfloat16 tensors is taken in float32)."""
    return tensor.to(torch.promote_types(tensor.dtype, torch.float32))
