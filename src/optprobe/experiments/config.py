"""Experiment configuration: typed dataclasses, TOML loading and ``--set key=value`` overrides.

An experiment file holds a ``[defaults]`` table shared by every run and one ``[[runs]]`` table per
compared run (an optimizer, a schedule, a seed …). Every key is type-checked against the dataclass
below, so a typo or a wrong type is an error that names the key and the expected type.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import sys
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from optprobe.errors import OptprobeError
from optprobe.probe_config import ProbeConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


@dataclass
class CurvatureSpec:
    """One periodic curvature metric: ``name`` of ``optprobe.metrics.curvature`` and its options."""

    name: str = "sharpness"
    every: int = 50
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class ProbeSettings(ProbeConfig):
    """A run's ``probe`` table: :class:`optprobe.probe_config.ProbeConfig`'s fields, defaults and checks,
    except ``seed``, whose default None means the run's own seed. The metric names are checked by the
    runner (``check_experiment``), as that loads the metrics and torch."""

    seed: int | None = None

    def __post_init__(self) -> None:
        seed, self.seed = self.seed, 0 if self.seed is None else self.seed
        super().__post_init__()
        self.seed = None if seed is None else self.seed

    def _check_metrics(self) -> None:
        """Left to the runner: reading an experiment file must not import torch."""

    def probe_config(self, run_seed: int) -> ProbeConfig:
        """These settings as the Probe's own :class:`ProbeConfig`, seeded by ``run_seed`` unless set."""
        values = {f.name: getattr(self, f.name) for f in fields(ProbeConfig)}
        return ProbeConfig(**{**values, "seed": run_seed if self.seed is None else self.seed})


@dataclass
class RotationSettings:
    """Train through θ = R w (a structured random orthogonal R), as in :mod:`optprobe.optim.rotation`."""

    enabled: bool = False
    rounds: int = 1
    scope: str = "global"
    seed: int = 0


@dataclass
class RunConfig:
    """One training run of an experiment."""

    label: str = "run"
    task: str = "least_squares"
    task_options: dict[str, Any] = field(default_factory=dict)
    optimizer: str = "sgd"
    lr: float = 0.01
    optimizer_options: dict[str, Any] = field(default_factory=dict)
    random_scaling: bool = False
    rotation: RotationSettings = field(default_factory=RotationSettings)
    schedule: str = "constant"
    epochs: int = 1
    max_steps: int = 0
    batch_size: int = 0
    full_batch: bool = False
    eval_size: int = 0
    seed: int = 0
    reference: str = "none"
    pilot_epochs: int = 0
    checkpoint_every: int = 200
    keep_checkpoint: bool = False
    on_divergence: str = "stop"
    probe: ProbeSettings = field(default_factory=ProbeSettings)
    curvature: list[CurvatureSpec] = field(default_factory=list)


@dataclass
class ExperimentConfig:
    """A named experiment: what it tests, the finding it reproduces, and the runs it compares.

    ``criterion`` holds the keyword arguments of the finding test (``optprobe.findings.<finding_test or
    name>.test``); ``seeds`` is how many seeds each run is repeated with (``seed``, ``seed + 1``, …;
    1 under ``quick``); ``minutes`` is the estimated wall time of one seed of every run at the file's
    settings (``make run``'s conditions: a quiet 2-core CPU), see :func:`estimated_minutes`.
    """

    name: str
    order: int = 99
    title: str = ""
    finding: str = ""
    criterion: dict[str, Any] = field(default_factory=dict)
    finding_test: str = ""
    seeds: int = 1
    minutes: float = 1.0
    defaults: dict[str, Any] = field(default_factory=dict)
    quick: dict[str, Any] = field(default_factory=dict)
    runs: list[RunConfig] = field(default_factory=list)


def estimated_minutes(experiment: ExperimentConfig) -> float:
    """Estimated wall minutes of all its runs: ``minutes`` (one seed of every run) × ``seeds``."""
    return experiment.minutes * experiment.seeds


def estimated_run_seconds(experiment: ExperimentConfig) -> float:
    """Estimated wall seconds of one run × seed: 60 · ``minutes`` / (number of runs)."""
    return 60.0 * experiment.minutes / max(len(experiment.runs), 1)


SCHEDULES = ("constant", "cosine", "step", "warmup_cosine")
REFERENCES = ("none", "minimizer", "pilot", "pilot_other_seed")
#: stop at a non-finite loss; skip such steps; or stop because the experiment expects it (not a failure)
DIVERGENCE_POLICIES = ("stop", "skip", "expected")


def load_experiment(
    path: str | Path, overrides: list[str] = (), quick: bool = False, strict: bool = True
) -> ExperimentConfig:
    """Read an experiment TOML file, apply ``quick`` settings and ``--set`` overrides, and validate it."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise OptprobeError(f"experiment file {path} does not exist") from None
    except UnicodeDecodeError as exc:
        raise OptprobeError(f"{path} is not UTF-8 text ({exc}); save it as UTF-8") from None
    except IsADirectoryError:
        raise OptprobeError(f"{path} is a folder, not an experiment file") from None
    except tomllib.TOMLDecodeError as exc:
        raise OptprobeError(f"{path} is not valid TOML: {exc}") from None
    return experiment_from_dict(raw, overrides, quick, source=str(path), strict=strict)


def experiment_from_dict(
    raw: dict[str, Any],
    overrides: list[str] = (),
    quick: bool = False,
    source: str = "config",
    strict: bool = True,
) -> ExperimentConfig:
    """Build a validated :class:`ExperimentConfig` from parsed TOML (see :func:`load_experiment`)."""
    raw = dict(raw)
    run_tables = raw.pop("runs", None)
    if not run_tables:
        raise OptprobeError(
            f"{source} has no [[runs]] table: add one per training run, e.g. [[runs]] label = \"sgd\" "
            "optimizer = \"sgd\" lr = 0.01 (keys shared by every run go in [defaults])"
        )
    if not isinstance(run_tables, list):
        raise OptprobeError(f"{source}: runs must be an array of tables ([[runs]]), got {run_tables!r}")
    header = _build(ExperimentConfig, {**raw, "runs": []}, source)
    if header.seeds < 1:
        raise OptprobeError(f"{source}: seeds must be at least 1, got {header.seeds}")
    if quick:  # a smoke test: one seed per run
        header.seeds = 1
    shared = dict(header.defaults)
    labels = [str(t.get("label", f"run{i}")) if isinstance(t, dict) else "" for i, t in enumerate(run_tables)]
    run_overrides, per_label = _parse_overrides(overrides, labels, strict)
    runs = []
    for i, table in enumerate(run_tables):
        if not isinstance(table, dict):
            raise OptprobeError(f"{source}: runs[{i}] must be a table, got {type(table).__name__}")
        merged = _merge(shared, table)
        if quick:  # [quick] overrides the runs' own settings too: a run's max_steps must not undo it
            merged = _merge(merged, header.quick)
        if quick and isinstance(table.get("quick"), dict):
            merged = _merge(merged, table["quick"])
        merged.pop("quick", None)
        merged = _merge(merged, run_overrides)
        label = str(merged.get("label", f"run{i}"))
        merged = _merge(merged, per_label.get(labels[i], {}))
        runs.append(_build(RunConfig, merged, f"{source}: run {label!r}"))
    for run in runs:
        _check_choices(run, source)
    repeated = sorted({run.label for run in runs if [r.label for r in runs].count(run.label) > 1})
    if repeated:
        raise OptprobeError(
            f"{source}: runs share the label(s) {', '.join(map(repr, repeated))}, and a label names the "
            "run's directory; give each run its own label (e.g. --set runs.OLD.label=NEW)"
        )
    header.runs = runs
    return header


def _check_choices(run: RunConfig, source: str) -> None:
    for value, allowed, key in (
        (run.schedule, SCHEDULES, "schedule"),
        (run.reference, REFERENCES, "reference"),
        (run.on_divergence, DIVERGENCE_POLICIES, "on_divergence"),
        (run.rotation.scope, ("global", "module"), "rotation.scope"),
    ):
        if value not in allowed:
            raise OptprobeError(f"{source}: run {run.label!r}: {key} must be one of {allowed}, got {value!r}")
    for name in ("epochs", "max_steps", "batch_size", "eval_size", "pilot_epochs"):
        if getattr(run, name) < 0:
            raise OptprobeError(f"{source}: run {run.label!r}: {name} must be ≥ 0, got {getattr(run, name)}")
    for spec in run.curvature:
        if spec.every < 1:
            raise OptprobeError(
                f"{source}: run {run.label!r}: curvature {spec.name!r} every must be ≥ 1 (steps between "
                f"measurements), got {spec.every}; to measure no curvature, remove its entry"
            )
    if run.checkpoint_every < 1:
        raise OptprobeError(
            f"{source}: run {run.label!r}: checkpoint_every must be ≥ 1, got {run.checkpoint_every}"
        )
    if not 0 < run.lr < math.inf:
        raise OptprobeError(f"{source}: run {run.label!r}: lr must be a positive finite number, got {run.lr}")
    if run.epochs == 0 and run.max_steps == 0:
        raise OptprobeError(f"{source}: run {run.label!r}: set epochs or max_steps to a positive number")


def _parse_overrides(
    overrides: list[str], labels: list[str], strict: bool = True
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """``key=value`` → nested dict; ``runs.LABEL.key=value`` goes to that run only (labels may contain
    dots: the longest matching label wins; without ``strict`` an unknown label is skipped). Values are
    TOML; a bare word is a string."""
    shared: dict[str, Any] = {}
    per_label: dict[str, dict[str, Any]] = {}
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise OptprobeError(f"--set expects key=value (e.g. lr=0.01 or probe.every=5), got {item!r}")
        target = shared
        if key.startswith("runs."):
            rest = key[len("runs.") :]
            matches = [label for label in labels if rest.startswith(label + ".")]
            if not matches and not strict:
                continue
            if not matches:
                raise OptprobeError(
                    f"--set {item!r}: a per-run override reads runs.LABEL.key=value; this experiment's "
                    f"runs are {labels}"
                )
            label = max(matches, key=len)
            target = per_label.setdefault(label, {})
            key = rest[len(label) + 1 :]
        parts = key.split(".")
        for part in parts[:-1]:
            target = target.setdefault(part, {})
        target[parts[-1]] = _parse_value(text.strip())
    return shared, per_label


def _parse_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text  # a bare word such as adamw or cosine


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    """Instantiate dataclass ``cls`` from ``data``, checking every key and type."""
    known = {f.name: f for f in fields(cls)}
    for key in data:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise OptprobeError(f"{where}: unknown key {key!r}{hint}; known keys: {', '.join(known)}")
    required = [f.name for f in fields(cls) if _is_required(f) and f.name not in data]
    if required:
        raise OptprobeError(f"{where}: the key {required[0]!r} is required (e.g. {required[0]} = \"…\")")
    hints = typing.get_type_hints(cls)
    values = {key: _coerce(hints[key], value, f"{where}: {key}") for key, value in data.items()}
    try:
        return cls(**values)
    except OptprobeError as exc:  # a dataclass's own checks (ProbeConfig's) name no key's place
        raise OptprobeError(f"{where}: {exc}") from None


def _is_required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise OptprobeError(f"{where} must be a table, got {value!r}")
        return _build(tp, value, where)
    if origin is list:
        (item_type,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise OptprobeError(f"{where} must be a list, got {value!r}")
        return [_coerce(item_type, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is tuple:  # tuple[X, ...]: a TOML array
        item_type = typing.get_args(tp)[0]
        if not isinstance(value, list):
            raise OptprobeError(f"{where} must be a list, got {value!r}")
        return tuple(_coerce(item_type, v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise OptprobeError(f"{where} must be a table, got {value!r}")
        return dict(value)
    if origin in (typing.Union, types.UnionType):
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is Any or (
        isinstance(tp, type) and isinstance(value, tp) and not (tp is int and isinstance(value, bool))
    ):
        return value
    raise OptprobeError(f"{where} must be of type {getattr(tp, '__name__', tp)}, got {value!r}")


def unmatched_run_overrides(overrides: list[str], experiments: list[ExperimentConfig]) -> list[str]:
    """The ``runs.LABEL.key=value`` overrides whose LABEL is a run of none of ``experiments``."""
    labels = [run.label for exp in experiments for run in exp.runs]
    return [
        item
        for item in overrides
        if item.startswith("runs.")
        and not any(item[len("runs.") :].startswith(f"{label}.") for label in labels)
    ]
