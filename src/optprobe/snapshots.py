"""The points besides x_t that the Probe holds, kept as :data:`optprobe.reductions.POINTS` says.

"lagged" points (x_{t−1}, x_{t−2}) come from a short history of copies of x, taken at the end of a step
only when a step that reads them will be measured (and dropped otherwise, so a Probe measuring every
k steps holds no copy in between); "first" points (x_0) are copied once; "given" points (x*) are the
user's. Copies are this rank's shards under fully_shard, as the Probe holds x_t.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import Tensor

from optprobe.evaluation import Params, detached_copy
from optprobe.reductions import POINTS


class Snapshots:
    """Copies of the ``needed`` points; ``given`` maps a "given" point to its parameters and buffers."""

    def __init__(
        self, needed: Iterable[str], given: Mapping[str, tuple[Params, Mapping[str, Tensor] | None]]
    ) -> None:
        self.needed = set(needed)
        self.given = {p: given[p] for p in self.needed if POINTS[p].kept == "given" and p in given}
        lags = [POINTS[p].lag for p in self.needed if POINTS[p].kept == "lagged"]
        self.max_lag = max(lags, default=0)
        self.history: list[tuple[int, Params]] = []  # (s, x_s), newest first, at most max_lag entries
        self.first: dict[str, Params] = {}
        self.lost: set[str] = set()  # "first" points a resumed checkpoint did not hold: never re-copied

    def before_measuring(self, point: Callable[[], Params]) -> None:
        """Copy the "first" points (x at the Probe's first step) that are not held yet."""
        for name in self.needed:
            if POINTS[name].kept == "first" and name not in self.first and name not in self.lost:
                self.first[name] = detached_copy(point())

    def after_step(self, s: int, point: Callable[[], Params], measured: Callable[[int], bool]) -> None:
        """At the end of step s (x = x_s): keep x_s if a step within ``max_lag`` after s is measured."""
        if not any(measured(s + lag) for lag in range(1, self.max_lag + 1)):
            self.history = []
            return
        reused = self.history.pop()[1] if len(self.history) == self.max_lag else None
        if reused is None:
            copy = detached_copy(point())
        else:  # the oldest copy's tensors take x_s: no allocation once the history is full
            copy = reused
            x = point()
            torch._foreach_copy_([copy[name] for name in x], list(x.values()))  # one multi-tensor kernel
        self.history.insert(0, (s, copy))

    def at(self, t: int) -> dict[str, Params]:
        """The points held for step t: x_{t−lag} when copied at step t − lag, x_0, x*."""
        held = {name: params for name, (params, _) in self.given.items()}
        held.update(self.first)
        by_step = dict(self.history)
        for name in self.needed:
            spec = POINTS[name]
            if spec.kept == "lagged" and t - spec.lag in by_step:
                held[name] = by_step[t - spec.lag]
        return held

    def buffers(self, point: str) -> Mapping[str, Tensor] | None:
        """The buffers passes at ``point`` use: its own (x*), or None for the model's."""
        return self.given[point][1] if POINTS[point].own_buffers and point in self.given else None

    def state_dict(self) -> dict[str, Any]:
        return {
            "history": [(s, detached_copy(params)) for s, params in self.history],
            "first": {name: detached_copy(params) for name, params in self.first.items()},
        }

    def load_state_dict(
        self, state: Mapping[str, Any], to: Callable[[Params], Params], started: bool
    ) -> None:
        """Restore :meth:`state_dict` (tensors moved by ``to``), dropping points this Probe does not need;
        after the first step (``started``), a "first" point the state lacks stays unknown (NaN columns)."""
        history = [(int(s), to(params)) for s, params in state.get("history", ())]
        self.history = history[: self.max_lag]
        self.first = {n: to(p) for n, p in state.get("first", {}).items() if n in self.needed}
        firsts = {n for n in self.needed if POINTS[n].kept == "first"}
        self.lost = (firsts - set(self.first)) if started else set()
