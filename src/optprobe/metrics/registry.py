"""Metric names: what ``ProbeConfig(metrics=(...))``, ``Probe(metrics=[...])`` and experiment configs accept.

A trajectory family registers a factory where it is defined; the factory turns the Probe's
:class:`Setup` into the family's metrics (convexity gives one gap per comparison point)::

    @trajectory_family("norms")
    def _norms(setup: Setup) -> list[TrajectoryMetric]:
        return [Norms(setup.per_layer)]

A periodic metric registers its class (``@periodic_metric("sharpness")``). The built-in modules below are
imported on the first look-up, so a new built-in metric is one file and one line in ``_BUILTIN``; a
user's own metric needs no registration at all (pass the instance: ``Probe(metrics=["norms", Mine()])``).
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from optprobe.errors import OptprobeError
from optprobe.metrics.base import PeriodicMetric, TrajectoryMetric

_BUILTIN = (
    "optprobe.metrics.convexity",
    "optprobe.metrics.smoothness",
    "optprobe.metrics.correlation",
    "optprobe.metrics.norms",
    "optprobe.metrics.distance",
    "optprobe.metrics.update_cosine",
    "optprobe.metrics.curvature",
    "optprobe.metrics.gradient_noise",
    "optprobe.metrics.full_smoothness",
)


@dataclass(frozen=True)
class Setup:
    """What a family's factory may read: the EMA betas, per-layer columns, the points to compare with."""

    betas: tuple[float, ...] = (0.99,)
    per_layer: bool = False
    targets: tuple[str, ...] = ("prev",)  # "prev" (x_{t−1}), and "ref" (x*) when the Probe has a reference


Factory = Callable[[Setup], "TrajectoryMetric | Sequence[TrajectoryMetric]"]
_TRAJECTORY: dict[str, Factory] = {}
_PERIODIC: dict[str, type[PeriodicMetric]] = {}
_loaded = False


def trajectory_family(name: str) -> Callable[[Factory], Factory]:
    """Decorator: register ``factory(setup) -> metric(s)`` under ``name``."""

    def register(factory: Factory) -> Factory:
        _TRAJECTORY[name] = factory
        return factory

    return register


def periodic_metric(name: str) -> Callable[[type[PeriodicMetric]], type[PeriodicMetric]]:
    """Class decorator: register a :class:`PeriodicMetric` under ``name`` (for experiment configs)."""

    def register(cls: type[PeriodicMetric]) -> type[PeriodicMetric]:
        _PERIODIC[name] = cls
        return cls

    return register


def _load_builtins() -> None:
    global _loaded
    if not _loaded:
        _loaded = True  # set first: a built-in module may itself look the registry up while it loads
        for module in _BUILTIN:
            importlib.import_module(module)


def trajectory_families() -> dict[str, Factory]:
    """Every registered trajectory family, by name (built-ins first)."""
    _load_builtins()
    return _TRAJECTORY


def periodic_metrics() -> dict[str, type[PeriodicMetric]]:
    """Every registered periodic metric class, by name."""
    _load_builtins()
    return _PERIODIC


def check_family(name: str) -> None:
    """Raise an :class:`OptprobeError` naming the known families unless ``name`` is one."""
    known = trajectory_families()
    if name not in known:
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise OptprobeError(f"unknown metric family {name!r}{hint}; choose from {', '.join(known)}")


def build(entries: Sequence[str | TrajectoryMetric], setup: Setup) -> list[TrajectoryMetric]:
    """The metrics of ``entries``: a family name expands through its factory, an instance is kept."""
    metrics: list[TrajectoryMetric] = []
    for entry in entries:
        if isinstance(entry, TrajectoryMetric):
            metrics.append(entry)
        elif isinstance(entry, PeriodicMetric):
            name = type(entry).__name__
            raise OptprobeError(f"{name} is a periodic metric: pass it as Probe(periodic=[...])")
        elif isinstance(entry, str):
            check_family(entry)
            made = _TRAJECTORY[entry](setup)
            metrics += [made] if isinstance(made, TrajectoryMetric) else list(made)
        else:
            raise OptprobeError(
                f"metrics entries must be family names or TrajectoryMetric instances, got {entry!r} "
                f"({type(entry).__name__})"
            )
    return metrics


@dataclass(frozen=True)
class Declared:
    """What metric classes declare about their columns: (stem, family) pairs, longest stem first, and
    the stems of EMA columns (``<stem>_<against>_<β>``, as :class:`~optprobe.metrics.windows.WindowStats`
    names them)."""

    stems: tuple[tuple[str, str], ...]
    emas: tuple[str, ...]


def declared_columns() -> Declared:
    """The columns every metric class declares: built-ins, the full-batch metrics and the user's own."""
    _load_builtins()
    from optprobe.metrics.fullbatch import FullBatchMetrics

    classes: list[type] = [FullBatchMetrics]
    pending: list[type] = [TrajectoryMetric, PeriodicMetric]
    while pending:
        cls = pending.pop()
        classes.append(cls)
        pending += cls.__subclasses__()
    pairs = {(stem, cls.family) for cls in classes for stem in getattr(cls, "columns", ())}
    emas = {stem for cls in classes for stem in getattr(cls, "emas", ())}
    return Declared(tuple(sorted(pairs, key=lambda pair: (-len(pair[0]), pair))), tuple(sorted(emas)))
