"""The task registry: the :class:`Task` record, ``register``, and building a task by name with checked
options (a builder's signature is its options)."""

import difflib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from optprobe.errors import OptprobeError

LossFn = Callable[[nn.Module, tuple], torch.Tensor]


@dataclass
class Task:
    """A model family, a loss and data: what one optprobe experiment trains and measures.

    `eval` is a held-out set for full-batch metrics (None when there is none); `reference`, when known,
    maps parameter names to the exact minimizer of the training loss (convex tasks), usable with
    `torch.func.functional_call`.
    """

    name: str
    model_fn: Callable[[], nn.Module]
    loss_fn: LossFn
    train: Dataset
    eval: Dataset | None
    batch_size: int
    summary: str
    reference: dict[str, torch.Tensor] | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        """Human-readable description: what the task is, its sizes and the options it was built with."""
        n_eval = len(self.eval) if self.eval is not None else 0
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        ref = "known" if self.reference is not None else "unknown"
        return (
            f"{self.name}: {self.summary}\n"
            f"  train {len(self.train)} / eval {n_eval} samples, batch size {self.batch_size}, "
            f"reference minimizer {ref}\n  options: {opts}"
        )


TASKS: dict[str, Callable[..., Task]] = {}


def register(builder: Callable[..., Task]) -> Callable[..., Task]:
    """Add a task builder to the registry under its function name."""
    TASKS[builder.__name__] = builder
    return builder


def task_options(name: str) -> dict[str, Any]:
    """The options of task `name` with their defaults (`inspect.Parameter.empty` when required)."""
    return {k: p.default for k, p in inspect.signature(_builder(name)).parameters.items()}


def _builder(name: str) -> Callable[..., Task]:
    if name not in TASKS:
        close = difflib.get_close_matches(name, TASKS, n=1, cutoff=0.0)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise OptprobeError(f"unknown task {name!r}; {hint}known tasks: {', '.join(sorted(TASKS))}")
    return TASKS[name]


def check_task_options(name: str, options: dict[str, Any]) -> inspect.BoundArguments:
    """`options` bound to task `name`'s builder (defaults applied); :class:`OptprobeError` when they do
    not fit its signature."""
    signature = inspect.signature(_builder(name))
    try:
        bound = signature.bind(**options)
    except TypeError as exc:
        raise OptprobeError(f"task {name!r}: {exc}; its options are {list(signature.parameters)}") from exc
    bound.apply_defaults()
    return bound


def build_task(name: str, **options: Any) -> Task:
    """Build the registered task `name` with keyword `options` (see `task_options(name)`)."""
    builder = _builder(name)
    bound = check_task_options(name, options)
    task = builder(**bound.arguments)
    task.name, task.options = name, dict(bound.arguments)
    return task


def make_task(
    model_fn: Callable[[], nn.Module],
    loss_fn: LossFn,
    train: Dataset,
    eval: Dataset | None,
    batch_size: int,
    summary: str,
    reference: dict[str, torch.Tensor] | None = None,
) -> Task:
    """A builder's :class:`Task`; ``build_task`` fills in its name and options."""
    return Task("", model_fn, loss_fn, train, eval, batch_size, summary, reference)
