"""The named experiments: one TOML file each in ``experiments/configs/``, plus the default suite."""

from __future__ import annotations

import difflib
import sys
from importlib import resources
from pathlib import Path

from optprobe.errors import OptprobeError
from optprobe.experiments.config import ExperimentConfig, experiment_from_dict, load_experiment
from optprobe.runinfo import RUN_INFO, read_run_info

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

DEFAULT_SUITE = (
    "convex_sanity",
    "local_convexity",
    "update_correlation",
    "random_scaling",
    "edge_of_stability",
    "rotation",
)


def config_dir() -> Path:
    return Path(str(resources.files("optprobe.experiments") / "configs"))


def experiment_names() -> list[str]:
    """Every named experiment, in the order of the studies' findings."""
    return sorted((p.stem for p in config_dir().glob("*.toml")), key=_order)


def _order(name: str) -> tuple[int, str]:
    header = tomllib.loads((config_dir() / f"{name}.toml").read_text(encoding="utf-8"))
    return int(header.get("order", 99)), name


def experiment_path(name_or_path: str) -> Path:
    """The TOML file of a named experiment, or the given path when it is a file."""
    path = Path(name_or_path)
    if path.suffix == ".toml":
        if not path.is_file():
            raise OptprobeError(f"experiment file {path} does not exist")
        return path
    candidate = config_dir() / f"{name_or_path}.toml"
    if candidate.is_file():
        return candidate
    names = experiment_names()
    close = difflib.get_close_matches(name_or_path, names, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise OptprobeError(f"unknown experiment {name_or_path!r}.{hint} `optprobe list` shows all of them.")


def get_experiment(
    name_or_path: str, overrides: list[str] = (), quick: bool = False, strict: bool = True
) -> ExperimentConfig:
    """The validated configuration of a named experiment (or an experiment TOML file); without ``strict``,
    per-run overrides naming runs the experiment does not have are ignored."""
    return load_experiment(experiment_path(name_or_path), overrides, quick, strict)


def experiment_from_run_dir(run_dir: str | Path, overrides: list[str] = ()) -> ExperimentConfig:
    """The one-run experiment recorded in a run directory's ``run.json``, to reproduce that run."""
    run_dir = Path(run_dir)
    if not (run_dir / RUN_INFO).is_file():
        raise OptprobeError(
            f"{run_dir} holds no {RUN_INFO}; --from needs a run directory written by optprobe run"
        )
    info = read_run_info(run_dir)
    if "run_config" not in info:
        raise OptprobeError(f"{run_dir}/{RUN_INFO} records no run_config: it was not written by optprobe run")
    raw = {
        "name": info.get("experiment", "reproduced"),
        "finding": info.get("finding", ""),
        "runs": [info["run_config"]],
    }
    return experiment_from_dict(raw, list(overrides), source=str(run_dir / RUN_INFO))
