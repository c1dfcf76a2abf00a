"""Wall time of `gcop --help` (target: under 2 s), beside what it is made of, in one run.

Each command runs `--runs` times as a fresh process, interleaved (so a busy machine slows
all of them alike); the table gives the median and the range. `python -c pass` is the
interpreter alone; `import gcop` and `import gcop.cli` are the library's share;
`gcop compile --help` is the one command that must import the optimizer (DSPy, TRL) to
build its options from the stage configs, shown for scale. Usage:

    python benchmarks/cli_startup.py --runs 10 --heavy-runs 3 --write docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

BIN = Path(sys.executable).parent
HEAVY = ("gcop bench --help", "gcop compile --help")  # import DSPy, TRL: fewer runs
COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    'python -c "import gcop"': [sys.executable, "-c", "import gcop"],
    'python -c "import gcop.cli"': [sys.executable, "-c", "import gcop.cli"],
    "gcop --help": [str(BIN / "gcop"), "--help"],
    "gcop bench --help": [str(BIN / "gcop"), "bench", "--help"],
    "gcop compile --help": [str(BIN / "gcop"), "compile", "--help"],
}


def wall(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--heavy-runs", type=int, default=3, help="runs of the heavy commands")
    parser.add_argument("--write", type=Path, help="append the section to this markdown file")
    args = parser.parse_args()
    load = os.getloadavg()[0]  # how busy the machine was: the absolute times depend on it
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for run in range(args.runs):
        for name, command in COMMANDS.items():
            if name not in HEAVY or run < args.heavy_runs:
                times[name].append(wall(command))
    base = statistics.median(times["gcop --help"])
    lines = [
        "",
        "## CLI start-up: `gcop --help`",
        "",
        f"    python benchmarks/cli_startup.py --runs {args.runs} --heavy-runs {args.heavy_runs}",
        "",
        f"{datetime.now(UTC):%Y-%m-%d}, {platform.machine()}, {os.cpu_count()} CPUs (load average "
        f"{load:.1f} when it started), Python {platform.python_version()}; n={args.runs} fresh "
        f"processes per command (n={args.heavy_runs} for the last two), interleaved; median and "
        "range in seconds.",
        "",
        "| command | n | median s | min-max s | x `gcop --help` |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, values in times.items():
        median = statistics.median(values)
        spread = f"{min(values):.2f}-{max(values):.2f}"
        lines.append(
            f"| `{name}` | {len(values)} | {median:.2f} | {spread} | {median / base:.1f} |"
        )
    lines += [
        "",
        "`gcop --help` imports typer, rich and gcop's own light modules only; torch, LiteLLM "
        "and DSPy load when a command needs them (`import gcop` loads none of them; "
        "`tests/test_architecture.py` checks that). `gcop bench --help` imports the task "
        "modules to list the registered tasks; `gcop compile --help` builds its options from "
        "the optimizer's config dataclasses, so it imports the optimizer.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        with args.write.open("a") as f:
            f.write(text)


if __name__ == "__main__":
    main()
