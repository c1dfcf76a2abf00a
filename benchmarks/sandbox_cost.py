"""Per-candidate wall time of the code metric, before and after the unforgeable verdict.

Side by side in one run, on the first N HumanEval reference solutions, each candidate scored
by every variant in turn (the order rotates per candidate, so drift hits all alike):

- `before`: the metric and sandbox as of `--before-ref` (read with `git show`, loaded from a
  temp dir): candidate and tests in one script, one sandboxed process, exit 0 + a token.
- `after, one run`: today's sandbox (namespaces, cgroup, facts) on that same single script,
  to separate the sandbox's cost from the judge's.
- `after`: today's metric: a judge and a callee, two sandboxed processes and a pipe protocol.

    python benchmarks/sandbox_cost.py --n 50
"""

from __future__ import annotations

import argparse
import importlib.util
import platform
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import dspy

from gcop.programs import data
from gcop.programs.code import code_metric, humaneval_example
from gcop.programs.sandbox import run_python

BEFORE_REF = "cb93be3"
"""The last commit with the single-process metric (issue 9 replaced it)."""
ROOT = Path(__file__).resolve().parent.parent


def load_before(ref: str, folder: Path) -> tuple[ModuleType, ModuleType]:
    """The old sandbox and code modules, from git, as standalone modules (the old code
    module's `run_python` is pointed at the old sandbox)."""
    modules = []
    for name in ("sandbox", "code"):
        text = subprocess.run(["git", "show", f"{ref}:programs/{name}.py"], cwd=ROOT,
                              check=True, capture_output=True, text=True).stdout  # fmt: skip
        path = folder / f"before_{name}.py"
        path.write_text(text)
        spec = importlib.util.spec_from_file_location(f"gcop_before_{name}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
        modules.append(module)
    sandbox, code = modules
    code.run_python = sandbox.run_python
    return sandbox, code


def one_script(example: dspy.Example, code: str) -> float:
    """The old single script, run by today's sandbox: 1.0 iff exit 0 and the token."""
    token = secrets.token_hex(16)
    script = f"{example.prompt}{code}\n\n{example.test}\n\ncheck({example.entry_point})\n"
    result = run_python(f"{script}\nprint({token!r})\n", timeout_s=10)
    return float(result.passed and token in result.stdout)


def mean_ci(xs: list[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95% interval (normal approximation, n >= 30)."""
    return statistics.fmean(xs), 1.96 * statistics.stdev(xs) / len(xs) ** 0.5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50, help="HumanEval reference solutions")
    parser.add_argument("--before-ref", default=BEFORE_REF, help="git ref of the old metric")
    args = parser.parse_args()

    rows = list(data.pull("humaneval"))[: args.n]
    examples = [humaneval_example(row) for row in rows]
    with tempfile.TemporaryDirectory() as folder:
        _, before = load_before(args.before_ref, Path(folder))
        variants: dict[str, Callable[[dspy.Example, str], float]] = {
            "before": lambda e, c: before.code_metric(e, dspy.Prediction(code=c)),
            "after, one run": one_script,
            "after": lambda e, c: code_metric(e, dspy.Prediction(code=c)),
        }
        names = list(variants)
        times: dict[str, list[float]] = {name: [] for name in names}
        passed: dict[str, int] = dict.fromkeys(names, 0)
        for i, example in enumerate(examples):
            order = names[i % 3 :] + names[: i % 3]
            for name in order:
                start = time.perf_counter()
                passed[name] += int(variants[name](example, example.reference))
                times[name].append(time.perf_counter() - start)

    print(f"n={len(examples)} HumanEval reference solutions, sequential, one thread; "
          f"{platform.machine()}, {platform.python_version()}, "
          f"{time.strftime('%Y-%m-%d')}, before = {args.before_ref}")  # fmt: skip
    print("| metric | passed | mean s (95% CI) | median s | p90 s | x before |")
    print("|---|---:|---:|---:|---:|---:|")
    base = statistics.fmean(times["before"])
    for name in names:
        xs = sorted(times[name])
        mean, half = mean_ci(xs)
        p90 = xs[int(0.9 * (len(xs) - 1))]
        print(f"| {name} | {passed[name]}/{len(xs)} | {mean:.3f} ± {half:.3f} | "
              f"{statistics.median(xs):.3f} | {p90:.3f} | {mean / base:.2f} |")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
