"""A candidate reduction pass (issue #19): every inner product of a chunk from one Gram matrix V Vᵀ.

For a piece that is one chunk of a large tensor, the K vectors the dots need are written as rows of one
(K, n) buffer (a source read in place by the library is copied once, and a difference whose first source
is such a row is built from that row, so each source is read from memory once), and all K² inner
products come from one ``torch.mm(V, V.T)``, accumulated in the chunk's dtype (float32 at least) as the
library's ``torch.dot`` is; differences are built first, never formed from Gram entries. Groups of small
tensors go through the library's code unchanged; ℓ1 / ℓ∞ norms are taken as there (|a| in a spare row).

Not in the library because it lost on the 2-core CPU it was tried on (AMD EPYC, torch 2.13 with MKL, 1
thread, 2026-12-02): MKL's sgemm for a (K, 131072) · (131072, K) product costs about 6 µs per entry of
the K × K result from cache, half a ``torch.dot``, so V Vᵀ costs as much as every one of the K(K+1)/2
distinct dots and wins only where nearly all of them are needed; the full set needs 5 of 10 (K = 4).
On the benchmark MLP the pass took 5.0–8.4 ms (median) against 3.7–4.0 ms, and its float32 error vs
float64 was 4–8× the per-dot pass's (presumably sgemm sums a chunk in fewer partial sums; not checked):

    python benchmarks/reductions.py --compare-with benchmarks/gram_reductions.py
"""

from __future__ import annotations

import torch
from torch import Tensor

import optprobe.reductions as library
from optprobe.reductions import VECTORS, Parts, Workspace

__all__ = ["Reduction", "Workspace"]


class Reduction(library.Reduction):
    """The library's Reduction, with one matrix product per chunk of a large tensor for the dots."""

    def _reduce_group(self, group: list[tuple[str, Parts]]) -> None:
        """Append [⟨a, b⟩ per pair, ‖a‖₁, ‖a‖∞] of ``group``; the dots of a lone chunk from V Vᵀ."""
        if len(group) > 1 or not self.dots:
            super()._reduce_group(group)
            return
        name, parts = group[0]
        first = parts[self.vectors[0]][0]
        dtype = torch.promote_types(first.dtype, torch.float32)
        rows = sorted({v for pair in self.dots for v in pair}, key=lambda v: (len(parts[v]), v))
        normed = sorted(set(self.l1) | set(self.linf))
        buffer = self.workspace.rows(len(rows) + bool(normed), first.numel(), dtype, first.device)
        row_of_source: dict[str, Tensor] = {}
        for v, row in zip(rows, buffer, strict=False):
            sources = parts[v]
            minuend = row_of_source.get(VECTORS[v].sources[0])
            if len(sources) == 1:
                row.copy_(sources[0])
                row_of_source[VECTORS[v].sources[0]] = row
            elif minuend is not None or sources[0].dtype != dtype:
                if minuend is None:
                    row.copy_(sources[0])
                torch.sub(row if minuend is None else minuend, sources[1], out=row)
            else:
                torch.sub(sources[0], sources[1], out=row)
        index = {v: i for i, v in enumerate(rows)}
        gram = torch.mm(buffer[: len(rows)], buffer[: len(rows)].T)
        pairs = self.workspace.index([index[a] * len(rows) + index[b] for a, b in self.dots], gram.device)
        results = [gram.view(-1)[pairs]]
        l1: dict[str, Tensor] = {}
        linf: dict[str, Tensor] = {}
        for v in normed:
            flat = buffer[-1]
            if v in index:
                torch.abs(buffer[index[v]], out=flat)
            elif len(parts[v]) == 1 and parts[v][0].dtype == dtype:
                torch.abs(parts[v][0], out=flat)
            else:
                flat.copy_(parts[v][0])
                if len(parts[v]) > 1:
                    flat.sub_(parts[v][1])
                flat.abs_()
            if v in self.l1:
                l1[v] = flat.sum()
            if v in self.linf:
                linf[v] = flat.amax() if flat.numel() else flat.new_zeros(())
        norms = [l1[v] for v in self.l1] + [linf[v] for v in self.linf]
        if norms:
            results.append(torch.stack(norms).to(gram.dtype))
        self._keep_row(name, torch.cat(results))
