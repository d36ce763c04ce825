"""How long the command line takes to answer, each command in a fresh process (what a user waits for).

    .venv/bin/python benchmarks/cli_startup.py [--rounds 7]

Commands are run in interleaved rounds; prints the median and min–max wall time of each.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

COMMANDS = (["--help"], ["--version"], ["list"], ["run", "--help"], ["sweep", "--help"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    optprobe = Path(sys.executable).with_name("optprobe")
    times: dict[str, list[float]] = {" ".join(c): [] for c in COMMANDS}
    for _ in range(args.rounds):
        for command in COMMANDS:
            start = time.perf_counter()
            subprocess.run([str(optprobe), *command], check=True, capture_output=True)
            times[" ".join(command)].append(time.perf_counter() - start)
    for name, values in times.items():
        print(f"optprobe {name:<14} median {statistics.median(values):.3f} s  "
              f"[{min(values):.3f}–{max(values):.3f}] over {len(values)} rounds")


if __name__ == "__main__":
    main()
