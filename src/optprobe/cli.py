"""The ``optprobe`` command: run experiments, list them, build reports, compare runs."""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from optprobe.errors import OptprobeError


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    with _quiet_broken_pipes():
        return _dispatch(args)


def _dispatch(args: argparse.Namespace) -> int:
    """Run the command; a user's mistake or the machine's failure is one line on stderr and rc 2."""
    try:
        return args.handler(args)
    except (OptprobeError, FileNotFoundError) as exc:  # bad input: the message says what to change
        print(f"optprobe: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        message = _environment_error(exc)
        if message is None:  # not a full disk, a permission or a file in the way: a bug to report
            raise
        print(f"optprobe: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "\noptprobe: interrupted. Every completed step is in the run directory; run the same command "
            "again to resume.",
            file=sys.stderr,
        )
        return 130


#: errno → what to do, for the failures of the machine rather than of optprobe (translated at the CLI).
_ENVIRONMENT_ERRORS = {
    errno.ENOSPC: "the disk is full: free space and run the same command again (it resumes from the last "
    "checkpoint; every row written so far stays readable)",
    errno.EDQUOT: "the disk quota is used up: free space and run the same command again (it resumes from the "
    "last checkpoint; every row written so far stays readable)",
    errno.EFBIG: "the file grew past the size this file system allows: write to another disk (--out)",
    errno.EACCES: "permission denied: choose a folder you can write to (--out) or fix its permissions",
    errno.EPERM: "operation not permitted: choose a folder you can write to (--out) or fix its permissions",
    errno.EROFS: "the file system is read-only: choose a writable folder (--out)",
    errno.ENOTDIR: "a file is in the way of a folder: give --out a folder",
    errno.EEXIST: "a file is in the way of a folder: give --out a folder",
    errno.EISDIR: "a folder is where a file should be written: remove it or choose another --out",
}


def _environment_error(exc: OSError) -> str | None:
    """The one-line message for an OSError caused by the machine or the paths given (None for others)."""
    hint = _ENVIRONMENT_ERRORS.get(exc.errno)
    if hint is None:
        return None
    where = f" writing {exc.filename}" if exc.filename else ""
    return f"{exc.strerror or exc}{where}: {hint}"


class _PipeSafe:
    """A text stream that stops writing, without an error, once its reader has gone (``| head``,
    ``| tee`` stopped by Ctrl-C): training then finishes its step and checkpoint instead of dying."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._broken = False

    def write(self, text: str) -> int:
        if not self._broken:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self._silence()
        return len(text)

    def flush(self) -> None:
        if not self._broken:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._silence()

    def _silence(self) -> None:
        """Point the descriptor at /dev/null, so the interpreter's last flush at exit succeeds too."""
        self._broken = True
        with contextlib.suppress(OSError, ValueError, AttributeError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@contextlib.contextmanager
def _quiet_broken_pipes() -> Iterator[None]:
    """Replace stdout and stderr by :class:`_PipeSafe` wrappers for the command's duration."""
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _PipeSafe(sys.stdout), _PipeSafe(sys.stderr)
    try:
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()  # what is still buffered, while a broken pipe is still quietly dropped
        sys.stdout, sys.stderr = saved


def _version() -> str:
    from optprobe import __version__

    return __version__


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="optprobe",
        description="Test optimization theory against real training runs.",
        epilog="examples:\n"
        "  optprobe list                          # the named experiments and their time estimates\n"
        "  optprobe run                           # the default suite, then runs/report.html\n"
        "  optprobe run convex_sanity --quick     # a smoke test (under a minute)\n"
        "  optprobe COMMAND --help                # a command's options",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"optprobe {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", help="one of:")
    _run_parser(sub)
    _sweep_parser(sub)
    _command(sub, "list", "list the named experiments, with time estimates for the default suite and --all",
             "example:\n  optprobe list").set_defaults(handler=_list)  # fmt: skip
    report = _command(
        sub, "report", "build the HTML report and figures of run directories",
        "examples:\n"
        "  optprobe report runs                   # runs/report.html\n"
        "  optprobe report runs/convex_sanity/*   # runs/convex_sanity/report/report.html",
    )  # fmt: skip
    report.add_argument("runs", nargs="+", type=Path, help="run directories or folders holding them")
    report.add_argument(
        "--out", type=Path, default=None,
        help="where to write (default: the folder given, or a 'report' folder beside the runs given)",
    )  # fmt: skip
    report.set_defaults(handler=_report)
    compare = _command(
        sub, "compare", "one line per run (final values and verdicts), then one per experiment's finding",
        "example:\n  optprobe compare runs/rotation",
    )  # fmt: skip
    compare.add_argument("runs", nargs="+", type=Path, help="run directories or folders holding them")
    compare.set_defaults(handler=_compare)
    return parser


def _command(sub: Any, name: str, summary: str, example: str) -> argparse.ArgumentParser:
    """A subcommand whose help page says ``summary`` and ends with ``example`` (kept as written)."""
    return sub.add_parser(
        name, help=summary, description=summary, epilog=example,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip


def _run_parser(sub: Any) -> None:
    run = _command(
        sub, "run", "run experiments (default: the default suite) and build the report",
        "examples:\n"
        "  optprobe run                                   # the default suite into runs/\n"
        "  optprobe run convex_sanity --quick --out /tmp/smoke\n"
        "  optprobe run local_convexity --seeds 5 --set runs.cnn_sgdm.lr=0.05\n"
        "  optprobe run --all --device cuda\n"
        "  optprobe run --from runs/convex_sanity/logistic_adamw__seed0",
    )  # fmt: skip
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
    run.add_argument(
        "--no-progress", action="store_true",
        help="hide the progress bars and the lines of run k of n, ETA, skipped runs and the report (stderr)",
    )  # fmt: skip
    run.set_defaults(handler=_run)


def _sweep_parser(sub: Any) -> None:
    sweep = _command(
        sub, "sweep", "run an experiment over a grid of settings and seeds; print the best setting per run",
        "examples:\n"
        "  optprobe sweep local_convexity --grid lr=1e-4,3e-4,1e-3 --seeds 3   # runs/local_convexity_sweep\n"
        "  optprobe sweep convex_sanity --grid lr=0.01,0.1 --grid probe.every=1,5 --quick\n"
        "  optprobe sweep gradient_statistics --runs adamw --grid lr=1e-3,3e-3 --criterion full_loss\n"
        "  optprobe sweep update_correlation --grid lr=1e-3,3e-3 --executor ray --resources cpu=2",
    )  # fmt: skip
    sweep.add_argument("experiment", help="a name from `optprobe list` or an experiment TOML file")
    sweep.add_argument(
        "--grid",
        action="append",
        required=True,
        metavar="KEY=V1,V2,...",
        help="values to try, e.g. lr=1e-4,3e-4,1e-3; repeatable (the grid is their product)",
    )
    sweep.add_argument("--seeds", type=int, default=1, help="seeds per grid point (default 1)")
    sweep.add_argument(
        "--runs", type=lambda text: [s.strip() for s in text.split(",") if s.strip()], default=None,
        metavar="LABEL,...", help="sweep only these runs of the experiment (default: all of them)",
    )  # fmt: skip
    sweep.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a config value in every run (runs.LABEL.KEY=VALUE for one run); repeatable",
    )  # fmt: skip
    sweep.add_argument("--executor", default="local", choices=["local", "ray"], help="process pool or Ray")
    sweep.add_argument(
        "--workers", type=int, default=None, help="parallel runs (local executor; default: one per CPU core)"
    )
    sweep.add_argument(
        "--criterion", default="loss",
        help="table column to minimise, mean of its last 10%% of rows over seeds (default: loss)",
    )  # fmt: skip
    sweep.add_argument(
        "--out", type=Path, default=Path("runs"),
        help="output directory: the runs go to OUT/EXPERIMENT_sweep/ (default: runs)",
    )  # fmt: skip
    sweep.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    sweep.add_argument("--resources", help="per Ray trial: cpu=2,gpu=0.5 (default cpu=1, gpu=1 on cuda)")
    sweep.add_argument("--quick", action="store_true", help="small settings for a smoke test")
    sweep.add_argument(
        "--no-report", action="store_true", help="skip building the HTML report (OUT/EXPERIMENT_sweep/)"
    )
    sweep.set_defaults(handler=_sweep)


def _run(args: argparse.Namespace) -> int:
    from optprobe.experiments.config import estimated_run_seconds, unmatched_run_overrides
    from optprobe.experiments.progress import SuiteProgress
    from optprobe.experiments.registry import (
        DEFAULT_SUITE,
        experiment_from_run_dir,
        experiment_names,
        get_experiment,
    )
    from optprobe.experiments.runner import check_experiment, seed_runs
    from optprobe.experiments.suite import run_suite

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
    _check_out(args.out)
    for experiment in experiments:
        check_experiment(experiment)
    start = time.perf_counter()
    estimates = [estimated_run_seconds(e) for e in experiments for _ in seed_runs(e)]
    lines = SuiteProgress(estimates, enabled=not args.no_progress)
    run_dirs = run_suite(experiments, args.out, args.device, progress=not args.no_progress, lines=lines)
    print(f"{len(run_dirs)} runs in {time.perf_counter() - start:.0f} s, in {args.out}/")
    diverged = _print_divergences(run_dirs)
    if not args.no_report and run_dirs:
        from optprobe.report import build_report

        lines.report_start(len(run_dirs), args.out)
        path = build_report(run_dirs, args.out)
        lines.report_done()
        print(f"report: {path}")
    return 1 if diverged else 0


def _sweep(args: argparse.Namespace) -> int:
    from optprobe.experiments.runner import check_experiment
    from optprobe.experiments.sweep import best_settings, expand, parse_grid, run_sweep

    _check_device(args.device)
    grid = parse_grid(args.grid)
    experiment = expand(args.experiment, grid, args.seeds, args.overrides, args.quick, args.runs)
    _check_out(args.out)
    check_experiment(experiment)
    print(f"== {experiment.name}: {len(experiment.runs)} runs on the {args.executor} executor", flush=True)
    run_dirs = run_sweep(experiment, args.out, args.executor, args.workers, args.device, args.resources)
    best = best_settings(run_dirs, list(grid), args.criterion)
    print(best.to_string(index=False))
    if not args.no_report:
        from optprobe.report import build_report

        print(f"report: {build_report(run_dirs, args.out / experiment.name)}")
    return 1 if _print_divergences(run_dirs) else 0


def _list(args: argparse.Namespace) -> int:
    from optprobe.experiments.config import estimated_minutes
    from optprobe.experiments.registry import DEFAULT_SUITE, experiment_names, get_experiment

    experiments = [get_experiment(name) for name in experiment_names()]
    for e in experiments:
        mark = "*" if e.name in DEFAULT_SUITE else " "
        runs = f"{e.seeds} × {len(e.runs)} runs"
        print(f"{mark} {e.name:<22} ~{estimated_minutes(e):>4.1f} min  {runs:<13} {e.title}")
    default = [e for e in experiments if e.name in DEFAULT_SUITE]
    print()
    for what, chosen in (("default suite (*)", default), ("--all", experiments)):
        runs = sum(e.seeds * len(e.runs) for e in chosen)
        print(f"{what + ':':<19} ~{sum(map(estimated_minutes, chosen)):.1f} min of training, {runs} runs")
    print("estimates: the experiment file's `minutes` (one seed of every run, quiet 2-core CPU) × its seeds;")
    print("building the report comes on top")
    return 0


def _report(args: argparse.Namespace) -> int:
    from optprobe.report import build_report, find_run_dirs
    from optprobe.report.runs import default_report_dir

    run_dirs = find_run_dirs(args.runs)
    path = build_report(run_dirs, args.out or default_report_dir(args.runs))
    print(f"report: {path}")
    _print_divergences(run_dirs)
    return 0


def _compare(args: argparse.Namespace) -> int:
    from optprobe.report import find_run_dirs, load_runs
    from optprobe.report.findings import experiment_findings, finding_lines, tally
    from optprobe.report.runs import compare_runs

    run_dirs = find_run_dirs(args.runs)
    runs = load_runs(run_dirs)
    table = compare_runs(runs)
    measured = [c for c in table.columns if not (table[c].astype(str) == "not measured").all()]
    print(table[measured].to_string(index=False))  # a verdict no run measures is left out
    findings = experiment_findings(runs)
    if findings:
        print("\nfindings (95% intervals across seeds):")
        print("\n".join(finding_lines(findings)))
        print(tally(findings))
    _print_divergences(run_dirs)
    return 0


def _print_divergences(run_dirs: Sequence[Path]) -> int:
    """Print, on stderr, every run of ``run_dirs`` whose run.json records a divergence; returns how many
    of them the experiment did not expect."""
    from optprobe.runinfo import divergence_expected, divergence_message, read_run_info

    unexpected = 0
    for run_dir in run_dirs:
        info = read_run_info(run_dir)
        message = divergence_message(run_dir, info)
        if message is not None:
            print(f"optprobe: {message}", file=sys.stderr)
            unexpected += not divergence_expected(info)
    return unexpected


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise OptprobeError(f"--out {out} is a file; give --out a folder (it is created when missing)")


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
