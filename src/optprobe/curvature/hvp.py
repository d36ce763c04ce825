"""Hessian-vector products H v with H = ∇²ℓ(x, z) over all trained parameters, on flat vectors.

Two exact ways to compute H v, chosen per call by ``method="auto"``:

* double backward, H v = ∇_x ⟨∇ℓ(x), v⟩: the gradient graph g(x) = ∇ℓ(x) (``create_graph=True``) is built
  once per operator, on detached copies of the parameters (never the user's own graph), and each product
  is one backward pass through it. After the first, a product costs about one backward of the gradient,
  so a single vector (the sequential calls of Lanczos) uses this path. Memory: the one stored graph, held
  until the operator is dropped. Convolutions of data are built as :class:`DataConvMode` routes them, so
  that the products skip the input-gradient term those layers do not need.
* forward-over-reverse, H v = ∂_t ∇ℓ(x + t v)|₀ (``jvp`` of ``grad``), batched over a stack of vectors
  with ``vmap``: each call re-runs the forward and backward with dual numbers, which for one vector
  costs 2-3.5x a product through the stored graph (CPU, MLP and small CNN), but ``vmap`` amortises it
  over a stack (Hutchinson, Cauchy probes, Hessian rows) to about the same cost per vector or less.

Under data parallelism (an initialised process group of more than one rank, whole parameters) every
product is the mean over ranks of each rank's H_r v, one all-reduce per call: the Hessian of the mean of
the ranks' losses, which for equal per-rank batch sizes is the Hessian of the global-batch mean loss. The
products bypass DDP's hooks, so the operator reduces them itself; every rank then sees the same operator,
and Lanczos, Hutchinson and Cauchy estimators take the same steps and stopping decisions on all ranks
(each call is a collective: every rank must make the same calls).

Models that torch.func cannot trace (e.g. a custom ``autograd.Function`` without ``setup_context``) fall
back, once per model and with one warning, to double backward for stacks as well; models with an operation
that has no double backward fall back the same way to forward-over-reverse for single vectors. BatchNorm in
train mode needs no fallback (torch 2.13): ``vmap`` traces it, and its running-statistics update writes the
buffer copies that :meth:`Evaluator.loss_at` passes in, never the model's own buffers.
"""

from __future__ import annotations

import contextlib
import warnings
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.distributed.tensor import DTensor
from torch.nn.attention import SDPBackend, sdpa_kernel

from optprobe.curvature.data_conv import DataConvMode
from optprobe.curvature.operator import MatmulMixin
from optprobe.distributed import all_reduce_, is_distributed
from optprobe.errors import OptprobeError, ProbeWarning
from optprobe.evaluation import Batch, Evaluator, Params, RngState
from optprobe.reductions import layer_of

Partition = str | Callable[[str], str]

# (leaves x, names of the parameters ℓ is not linear in, their gradients with graphs)
_GradientGraph = tuple[list[Tensor], list[str], list[Tensor]]
_LABELS = {"forward": "forward-over-reverse", "double_backward": "double backward"}
# the models on which each method failed, so that later operators go straight to the other one
_FAILED: dict[str, weakref.WeakSet[nn.Module]] = {method: weakref.WeakSet() for method in _LABELS}


@dataclass(frozen=True)
class ParamLayout:
    """Where each named parameter lives in the flat vector (``named_parameters`` order)."""

    names: tuple[str, ...]
    shapes: tuple[torch.Size, ...]
    offsets: tuple[int, ...]
    dim: int

    @classmethod
    def of(cls, params: Mapping[str, Tensor]) -> ParamLayout:
        names = tuple(params)
        shapes = tuple(p.shape for p in params.values())
        offsets, total = [], 0
        for p in params.values():
            offsets.append(total)
            total += p.numel()
        return cls(names, shapes, tuple(offsets), total)

    def flatten(self, params: Mapping[str, Tensor]) -> Tensor:
        """x ↦ vec(x): concatenate the tensors' entries in layout order."""
        return torch.cat([params[name].reshape(-1) for name in self.names])

    def unflatten(self, vec: Tensor) -> Params:
        """vec(x) ↦ x: views of ``vec`` shaped like each parameter."""
        return {
            name: vec[off : off + shape.numel()].view(shape)
            for name, shape, off in zip(self.names, self.shapes, self.offsets, strict=True)
        }

    def holding(self, indices: Tensor) -> tuple[str, ...]:
        """Names of the parameters that hold any of the flat ``indices``."""
        bounds = torch.tensor(self.offsets[1:] + (self.dim,))
        which = torch.unique(torch.searchsorted(bounds, indices.cpu(), right=True))
        return tuple(self.names[int(i)] for i in which)

    def blocks(self, partition: Partition = "layer") -> dict[str, Tensor]:
        """Flat indices of each block: ``"layer"``, ``"tensor"`` (one block per parameter) or name → block."""
        if partition == "layer":
            key = layer_of
        elif partition == "tensor":
            key = str
        elif callable(partition):
            key = partition
        else:
            raise OptprobeError(
                f"partition must be 'layer', 'tensor' or a callable name -> block, got {partition!r}"
            )
        ranges: dict[str, list[Tensor]] = {}
        for name, shape, off in zip(self.names, self.shapes, self.offsets, strict=True):
            ranges.setdefault(key(name), []).append(torch.arange(off, off + shape.numel()))
        return {block: torch.cat(parts) for block, parts in ranges.items()}


class HessianOperator(MatmulMixin):
    """v ↦ ∇²ℓ(x, z) v at a fixed point x and batch z; accepts one vector (d,) or a stack (k, d).

    ``op @ v`` (v of shape (d,) or a matrix (d, k)) and ``op.to_scipy()`` (a SciPy ``LinearOperator``)
    multiply the same way, see :mod:`optprobe.curvature.operator`.

    ``method``: ``"auto"`` (double backward for one vector, forward-over-reverse for a stack, each
    replaced by the other on a model where it failed), ``"forward"`` or ``"double_backward"``.
    ``chunk_size`` bounds how many vectors ``vmap`` pushes through the model at once. All parameters must
    share one dtype and one device. ``across_ranks``: under a process group of more than one rank, each
    product is the rank mean of the ranks' products (see the module docstring); ``False`` keeps this
    rank's own Hessian. DTensor (sharded) parameters are never reduced here.
    """

    def __init__(
        self,
        evaluator: Evaluator,
        params: Mapping[str, Tensor],
        batch: Batch,
        chunk_size: int | None = 32,
        method: str = "auto",
        across_ranks: bool = True,
    ) -> None:
        if method not in ("auto", "forward", "double_backward"):
            raise OptprobeError(f"method must be 'auto', 'forward' or 'double_backward', got {method!r}")
        check_one_dtype(params)
        self.evaluator = evaluator
        self.params = {name: p.detach() for name, p in params.items()}
        self.batch = batch
        self.layout = ParamLayout.of(self.params)
        self.chunk_size = chunk_size
        self.method = method
        self.n_hvps = 0
        first = next(iter(self.params.values()))
        self.dtype, self.device = first.dtype, first.device
        # dropout draws from the generator of the device the model computes on, not the batch's
        self._rng = RngState.capture(self.device)
        self._graph: _GradientGraph | None = None
        whole = not evaluator.sharded and not any(isinstance(p, DTensor) for p in self.params.values())
        self.across_ranks = across_ranks and whole and is_distributed()

    @property
    def dim(self) -> int:
        return self.layout.dim

    def __call__(self, v: Tensor, within: Sequence[str] | None = None) -> Tensor:
        """H v for v of shape (d,) or H Vᵀ row-wise for V of shape (k, d).

        ``within``: names of the parameters outside which every v is zero (e.g. basis vectors of one layer);
        forward-over-reverse then carries tangents on those parameters only, which skips the tangent work
        upstream of them: the same products for less work.
        """
        stack = v.reshape(-1, self.dim).to(self.dtype)
        self.n_hvps += stack.shape[0]
        products = self._products(stack, within)
        if self.across_ranks:  # HVPs bypass DDP's hooks: average them over ranks here
            all_reduce_([products], mean=True)
        return products.reshape(v.shape)

    @contextlib.contextmanager
    def _session(self) -> Iterator[None]:
        # every pass replays the same random numbers (dropout), never advances the caller's RNG,
        # and runs attention through the math kernel, which supports forward AD and double backward
        with self.evaluator.replay(self._rng), sdpa_kernel(SDPBackend.MATH):
            yield

    def _products(self, stack: Tensor, within: Sequence[str] | None = None) -> Tensor:
        if self.method != "auto":
            return self._by(self.method, stack, within)
        model = self.evaluator.model
        # one vector: a backward through the stored graph beats re-running forward and backward
        preferred = ("forward", "double_backward") if stack.shape[0] > 1 else ("double_backward", "forward")
        first, second = sorted(preferred, key=lambda method: model in _FAILED[method])  # known failures last
        try:
            return self._by(first, stack, within)
        except Exception as err:  # torch.func and autograd raise assorted types for unsupported models
            if model in _FAILED[second]:
                raise
            _FAILED[first].add(model)
            self._graph = None
            warnings.warn(
                f"{_LABELS[first]} Hessian-vector products failed for {type(model).__name__} "
                f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); "
                f"using {_LABELS[second]} for this model from now on",
                ProbeWarning,
                stacklevel=4,
            )
            return self._by(second, stack, within)

    def _by(self, method: str, stack: Tensor, within: Sequence[str] | None = None) -> Tensor:
        """H vᵢ for every row vᵢ of ``stack`` by ``method``."""
        if method == "forward":
            return self._forward_over_reverse(stack, within)
        return self._double_backward(stack)

    def _forward_over_reverse(self, stack: Tensor, within: Sequence[str] | None = None) -> Tensor:
        grad_fn = torch.func.grad(lambda p: self.evaluator.loss_at(p, self.batch))
        moving = set(self.layout.names if within is None else within)
        fixed = {name: p for name, p in self.params.items() if name not in moving}
        primals = {name: p for name, p in self.params.items() if name in moving}

        def hvp(v: Tensor) -> Tensor:
            parts = self.layout.unflatten(v)
            tangents = {name: parts[name] for name in primals}
            _, tangent = torch.func.jvp(lambda p: grad_fn({**fixed, **p}), (primals,), (tangents,))
            return self.layout.flatten(tangent)

        with self._session():
            if stack.shape[0] == 1:  # vmap costs more than it saves for a single vector
                return hvp(stack[0]).unsqueeze(0)
            return torch.func.vmap(hvp, chunk_size=self.chunk_size, randomness="same")(stack)

    def _double_backward(self, stack: Tensor) -> Tensor:
        if self._graph is None:
            self._graph = self._gradient_graph()
        leaves, live, grads = self._graph
        if not live:  # the loss is linear in every parameter
            return torch.zeros_like(stack)
        rows = []
        for v in stack:  # the stored graph replays nothing: no RNG or attention-kernel session needed
            parts = self.layout.unflatten(v)
            hv = torch.autograd.grad(
                grads,
                leaves,
                [parts[name] for name in live],
                retain_graph=True,
                allow_unused=True,
                materialize_grads=True,
            )
            rows.append(torch.cat([h.reshape(-1) for h in hv]))
        return torch.stack(rows)

    def _gradient_graph(self) -> _GradientGraph:
        """Leaves x (detached copies) and g(x) = ∇ℓ(x), with graph, of the parameters ℓ is not linear in."""
        leaves = [p.detach().requires_grad_(True) for p in self.params.values()]
        with self._session(), torch.enable_grad(), DataConvMode():
            loss = self.evaluator.loss_at(dict(zip(self.layout.names, leaves, strict=True)), self.batch)
            grads = torch.autograd.grad(loss, leaves, create_graph=True, allow_unused=True)
        live: list[tuple[str, Tensor]] = []
        flat: list[str] = []  # used by the loss, yet their gradient has no graph
        for name, g in zip(self.layout.names, grads, strict=True):
            if g is not None and g.requires_grad:
                live.append((name, g))
            elif g is not None:
                flat.append(name)
        if flat:
            warnings.warn(
                f"the gradient of {_listed(flat)} does not depend on the parameters through autograd, so "
                "their Hessian blocks are taken as zero. That is right only if the loss is linear in them; "
                "an autograd.Function whose backward is @once_differentiable, or a .detach() inside the "
                "model, cuts the graph and makes every curvature metric wrong",
                ProbeWarning,
                stacklevel=5,
            )
        return leaves, [name for name, _ in live], [g for _, g in live]


def check_one_dtype(params: Mapping[str, Tensor]) -> None:
    """Refuse parameters in more than one (dtype, device): products work on one flat vector."""
    groups: dict[tuple[torch.dtype, torch.device], list[str]] = {}
    for name, p in params.items():
        groups.setdefault((p.dtype, p.device), []).append(name)
    if len(groups) > 1:
        found = "; ".join(
            f"{dtype} on {device}: {_listed(names)}" for (dtype, device), names in groups.items()
        )
        raise OptprobeError(
            "Hessian-vector products need every trained parameter in one dtype on one device, "
            f"got {found}; cast the model (e.g. model.double()) or freeze the odd parameters"
        )


def _listed(names: list[str], most: int = 3) -> str:
    """The first ``most`` names, comma-separated, with an ellipsis when there are more."""
    return ", ".join(names[:most]) + (", …" if len(names) > most else "")
