"""The ``optprobe`` command: run experiments, list them, build reports, compare runs."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from optprobe.errors import OptprobeError


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except (OptprobeError, FileNotFoundError) as exc:  # bad input: the message says what to change
        print(f"optprobe: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "\noptprobe: interrupted. Every completed step is in the run directory; run the same command "
            "again to resume.",
            file=sys.stderr,
        )
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="optprobe", description="Test optimization theory against real training runs."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run experiments (default: the default suite) and build the report")
    run.add_argument(
        "experiments", nargs="*", help="names from `optprobe list`, or paths to experiment TOML files"
    )
    run.add_argument("--all", action="store_true", help="run every named experiment (`optprobe list`)")
    run.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value in every run (runs.LABEL.KEY=VALUE for one run); repeatable",
    )
    run.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output directory (default: runs, or runs/reproduced with --from)",
    )
    run.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    run.add_argument("--seed", type=int, default=None, help="seed of every run (default: the config's)")
    run.add_argument(
        "--seeds",
        type=int,
        default=None,
        help="repeat every run over this many seeds: seed, seed+1, … (default: the experiment's seeds; 1 "
        "with --quick)",
    )
    run.add_argument("--quick", action="store_true", help="small settings for a smoke test (used in CI)")
    run.add_argument(
        "--from",
        dest="from_dir",
        type=Path,
        default=None,
        metavar="RUN_DIR",
        help="reproduce the run recorded in RUN_DIR/run.json (into --out, default runs/reproduced)",
    )
    run.add_argument("--no-report", action="store_true", help="skip building the HTML report")
    run.add_argument("--no-progress", action="store_true", help="hide progress bars")
    run.set_defaults(handler=_run)

    sweep = sub.add_parser("sweep", help="run an experiment over a grid of settings and seeds")
    sweep.add_argument("experiment", help="a name from `optprobe list` or an experiment TOML file")
    sweep.add_argument(
        "--grid",
        action="append",
        required=True,
        metavar="KEY=V1,V2,...",
        help="values to try, e.g. lr=1e-4,3e-4,1e-3; repeatable (the grid is their product)",
    )
    sweep.add_argument("--seeds", type=int, default=1, help="seeds per grid point (default 1)")
    sweep.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    sweep.add_argument("--executor", default="local", choices=["local", "ray"], help="process pool or Ray")
    sweep.add_argument("--workers", type=int, default=None, help="parallel runs (local executor)")
    sweep.add_argument("--criterion", default="loss", help="table column to minimise (default: loss)")
    sweep.add_argument("--out", type=Path, default=Path("runs"))
    sweep.add_argument("--device", default="cpu")
    sweep.add_argument("--quick", action="store_true")
    sweep.add_argument("--no-report", action="store_true")
    sweep.set_defaults(handler=_sweep)

    lst = sub.add_parser("list", help="list the named experiments")
    lst.set_defaults(handler=_list)

    report = sub.add_parser("report", help="build the HTML report and figures of run directories")
    report.add_argument("runs", nargs="+", type=Path, help="run directories or folders holding them")
    report.add_argument(
        "--out", type=Path, default=None, help="where to write (default: the first folder given)"
    )
    report.set_defaults(handler=_report)

    compare = sub.add_parser(
        "compare", help="one line per run (final values and verdicts), then one per experiment's finding"
    )
    compare.add_argument("runs", nargs="+", type=Path, help="run directories or folders holding them")
    compare.set_defaults(handler=_compare)
    return parser


def _run(args: argparse.Namespace) -> int:
    from optprobe.experiments.config import unmatched_run_overrides
    from optprobe.experiments.registry import (
        DEFAULT_SUITE,
        experiment_from_run_dir,
        experiment_names,
        get_experiment,
    )
    from optprobe.experiments.runner import Divergence, run_experiment

    _check_device(args.device)
    if args.seeds is not None and args.seeds < 1:
        raise OptprobeError(f"--seeds must be at least 1, got {args.seeds}")
    if args.all and (args.experiments or args.from_dir is not None):
        raise OptprobeError("--all runs every named experiment: give no experiment names and no --from")
    overrides = list(args.overrides) + ([f"seed={args.seed}"] if args.seed is not None else [])
    if args.from_dir is not None:
        if args.experiments:
            raise OptprobeError("give either experiment names or --from RUN_DIR, not both")
        experiments = [experiment_from_run_dir(args.from_dir, overrides)]  # that one run, its one seed
        args.out = args.out or Path("runs") / "reproduced"  # beside the original, not over it
    else:
        names = experiment_names() if args.all else args.experiments or list(DEFAULT_SUITE)
        strict = len(names) == 1  # with several experiments, runs.LABEL overrides apply where LABEL exists
        experiments = [get_experiment(name, overrides, args.quick, strict) for name in names]  # validate all
        unmatched = unmatched_run_overrides(overrides, experiments)
        if unmatched:
            raise OptprobeError(f"--set {unmatched[0]!r} names a run that none of {names} has")
    if args.seeds is not None:
        experiments = [replace(experiment, seeds=args.seeds) for experiment in experiments]
    args.out = args.out or Path("runs")
    start = time.perf_counter()
    run_dirs: list[Path] = []
    diverged = 0
    for experiment in experiments:
        print(f"== {experiment.name}: {experiment.title}", flush=True)
        try:
            run_dirs += run_experiment(experiment, args.out, args.device, progress=not args.no_progress)
        except Divergence as exc:
            diverged += 1
            print(f"optprobe: {exc}", file=sys.stderr)
    print(f"{len(run_dirs)} runs in {time.perf_counter() - start:.0f} s, in {args.out}/")
    if not args.no_report and run_dirs:
        from optprobe.report import build_report

        path = build_report(run_dirs, args.out)
        print(f"report: {path}")
    return 1 if diverged else 0


def _sweep(args: argparse.Namespace) -> int:
    from optprobe.experiments.sweep import best_settings, expand, parse_grid, run_sweep

    _check_device(args.device)
    grid = parse_grid(args.grid)
    experiment = expand(args.experiment, grid, args.seeds, args.overrides, args.quick)
    print(f"== {experiment.name}: {len(experiment.runs)} runs on the {args.executor} executor", flush=True)
    run_dirs = run_sweep(experiment, args.out, args.executor, args.workers, args.device)
    best = best_settings(run_dirs, list(grid), args.criterion)
    print(best.to_string(index=False))
    if not args.no_report:
        from optprobe.report import build_report

        print(f"report: {build_report(run_dirs, args.out / experiment.name)}")
    return 0


def _list(args: argparse.Namespace) -> int:
    from optprobe.experiments.registry import DEFAULT_SUITE, experiment_names, get_experiment

    for name in experiment_names():
        experiment = get_experiment(name)
        mark = "*" if name in DEFAULT_SUITE else " "
        print(f"{mark} {name:<22} ~{experiment.minutes:>4.1f} min  {experiment.title}")
    print("\n* in the default suite (`optprobe run` with no experiment); times are laptop-CPU estimates")
    return 0


def _report(args: argparse.Namespace) -> int:
    from optprobe.report import build_report, find_run_dirs

    run_dirs = find_run_dirs(args.runs)
    path = build_report(run_dirs, args.out or args.runs[0])
    print(f"report: {path}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from optprobe.report import find_run_dirs, load_runs
    from optprobe.report.findings import experiment_findings, finding_lines
    from optprobe.report.runs import compare_runs

    runs = load_runs(find_run_dirs(args.runs))
    table = compare_runs(runs)
    measured = [c for c in table.columns if not (table[c].astype(str) == "not measured").all()]
    print(table[measured].to_string(index=False))  # a verdict no run measures is left out
    findings = experiment_findings(runs)
    if findings:
        print("\nfindings (95% intervals across seeds):")
        print("\n".join(finding_lines(findings)))
    return 0


def _check_device(device: str) -> None:
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise OptprobeError(
            f"--device {device} asked for CUDA, but this torch build sees no GPU; use --device cpu"
        )
    if not device.startswith(("cpu", "cuda", "mps")):
        raise OptprobeError(f"unknown device {device!r}; use cpu, cuda or cuda:N")


if __name__ == "__main__":
    sys.exit(main())
