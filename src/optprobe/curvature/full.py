"""The Hessian of F, the full evaluation loss, not of one batch: ∇²F(x) v = Σ_c n_c ∇²ℓ(x, z_c) v / Σ_c n_c.

F is the function :meth:`~optprobe.evaluation.Evaluator.full_loss_and_grad` evaluates: the chunks z_c of
the evaluation loader weighted by their sizes n_c, chunk c drawing its random numbers (dropout) from the
RNG seeded with ``chunk_seed(seed, c)``, and BatchNorm in whatever mode and with whatever buffers the
evaluator's passes use (eval mode and the point's own buffers inside a Probe with ``eval_mode``). So the
operator is exactly ∇² of the F whose value and gradient the full-batch metrics report.

Cost: one product is one Hessian-vector product per chunk, N examples in all, i.e. N / B products on a
batch of B examples (:meth:`FullHessianOperator.batch_hvps`). Without ``keep_graphs`` each chunk's product
rebuilds that chunk's gradient graph (one forward and backward, then one backward through it: about 2x a
product through a stored graph); with ``keep_graphs`` the graphs of every chunk stay in memory and each
product after the first is one backward per chunk. The loader is read once per product, and must yield the
same chunks in the same order every time (no shuffling, as for F itself; chunk sizes are checked).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence

import torch
from torch import Tensor

from optprobe.curvature.hvp import HessianOperator, ParamLayout, check_one_dtype
from optprobe.curvature.operator import MatmulMixin
from optprobe.distributed import all_reduce_, is_distributed
from optprobe.errors import OptprobeError
from optprobe.evaluation import Batch, Evaluator, batch_size, chunk_seed, cuda_devices


class FullHessianOperator(MatmulMixin):
    """v ↦ ∇²F(x) v, F(x) = Σ_c n_c ℓ(x, z_c) / Σ_c n_c over ``loader``; one vector (d,) or a stack (k, d).

    ``seed``: F's seed (the Probe's ``config.seed``), so that the masks are those of the F the full-batch
    metrics measure. Under DDP each rank multiplies its own chunks and the sums are added over ranks, as
    for F. ``chunk_size`` and ``method`` are those of each chunk's
    :class:`~optprobe.curvature.hvp.HessianOperator`.
    """

    def __init__(
        self,
        evaluator: Evaluator,
        params: Mapping[str, Tensor],
        loader: Iterable[Batch],
        seed: int = 0,
        chunk_size: int | None = 32,
        method: str = "auto",
        keep_graphs: bool = False,
        across_ranks: bool = True,
    ) -> None:
        check_one_dtype(params)
        if evaluator.sharded:
            raise OptprobeError("the full-dataset Hessian needs whole parameters; not supported under FSDP")
        self.evaluator = evaluator
        self.params = {name: p.detach() for name, p in params.items()}
        self.loader = loader
        self.seed = seed
        self.layout = ParamLayout.of(self.params)
        self.chunk_size, self.method, self.keep_graphs = chunk_size, method, keep_graphs
        first = next(iter(self.params.values()))
        self.dtype, self.device = first.dtype, first.device
        self.n_hvps = 0  # products with ∇²F
        self.n_chunk_hvps = 0  # products with one chunk's ∇²ℓ, on this rank
        self.n_examples: int | None = None  # N = Σ_c n_c over all ranks, known after the first product
        self._sizes: list[int] | None = None
        self._kept: list[tuple[int, HessianOperator]] | None = None
        self.across_ranks = across_ranks and is_distributed()

    @property
    def dim(self) -> int:
        return self.layout.dim

    def batch_hvps(self, batch: int) -> float:
        """The products so far in units of a Hessian-vector product on a batch of ``batch`` examples."""
        if self.n_examples is None:
            return 0.0
        return self.n_hvps * self.n_examples / batch

    def __call__(self, v: Tensor, within: Sequence[str] | None = None) -> Tensor:
        """∇²F v for v of shape (d,) or row-wise for V of shape (k, d) (``within``: see HessianOperator)."""
        stack = v.reshape(-1, self.dim).to(self.dtype)
        self.n_hvps += stack.shape[0]
        total = torch.zeros_like(stack, dtype=torch.promote_types(self.dtype, torch.float32))
        sizes = []
        for n, op in self._chunk_operators():
            total.add_(op(stack, within), alpha=n)
            sizes.append(n)
        self.n_chunk_hvps += len(sizes) * stack.shape[0]
        if self._sizes is not None and sizes != self._sizes:
            raise OptprobeError(
                f"the evaluation loader yielded chunks of sizes {sizes[:5]}… after {self._sizes[:5]}…; the "
                "full-dataset Hessian needs the same chunks in the same order on every pass (no shuffle)"
            )
        self._sizes = sizes
        count = torch.tensor(float(sum(sizes)), dtype=torch.float64, device=self.device)
        if self.across_ranks:
            all_reduce_([total, count], mean=False)
        self.n_examples = int(count.item())
        if self.n_examples == 0:
            raise OptprobeError("the evaluation loader yielded no batch: F and its Hessian are undefined")
        return (total / self.n_examples).to(self.dtype).reshape(v.shape)

    def _chunk_operators(self) -> Iterator[tuple[int, HessianOperator]]:
        """(n_c, ∇²ℓ(x, z_c)) per chunk of this rank, each replaying the RNG seeded by chunk_seed(seed, c)."""
        if self._kept is not None:
            yield from self._kept
            return
        kept = []
        cuda = cuda_devices(self.params)
        for index, chunk in enumerate(self.evaluator._chunks(self.loader)):
            with torch.random.fork_rng(devices=cuda):
                torch.manual_seed(chunk_seed(self.seed, index))  # the operator captures this state
                op = HessianOperator(
                    self.evaluator, self.params, chunk, self.chunk_size, self.method, across_ranks=False
                )
            if self.keep_graphs:
                kept.append((batch_size(chunk), op))
            yield batch_size(chunk), op
        if self.keep_graphs:
            self._kept = kept
