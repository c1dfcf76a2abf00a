"""`bench`: core alone vs guide + core on one task, side by side, same examples, same cache."""

from __future__ import annotations

import os
import platform
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gcop.atomic import atomic_path, write_json
from gcop.calls import default_cache
from gcop.metrics import Outcome, Report, evaluate
from gcop.paths import portable
from gcop.program import Core, CoreOnly, GCoP, Guide
from gcop.task import Task

CORE_ONLY, GUIDED, COMPILED = "core-only", "gcop", "compiled"


@dataclass
class BenchConfig:
    """One benchmark run; every field is saved next to its results."""

    task: str
    core: str
    guide: str | None = None
    split: str = "dev"
    limit: int | None = 20
    seed: int = 0
    """Chooses which `limit` examples of the split are run (a seeded sample)."""
    num_threads: int = 16
    cost_weight: float = 0.0
    """lambda in utility = accuracy - lambda * dollars per query."""
    program: str | None = None
    """A folder `GCoP.save` wrote: run it (as "compiled") beside its own core alone."""


@dataclass
class BenchResult:
    config: BenchConfig
    reports: list[Report]
    wall_seconds: dict[str, float]
    ledger: dict[str, Any]
    machine: str = field(default_factory=lambda: f"{platform.machine()} {os.cpu_count()} CPUs")
    date: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    def as_dict(self) -> dict[str, Any]:
        return {
            "config": self.config.__dict__,
            "date": self.date,
            "machine": self.machine,
            "wall_seconds": self.wall_seconds,
            "ledger": self.ledger,
            "reports": [r.as_dict() for r in self.reports],
            "utility": {r.system: r.utility(self.config.cost_weight) for r in self.reports},
        }


def select_examples(task: Task, split: str, limit: int | None, seed: int) -> list:
    examples = task.load_split(split)
    if limit is not None and limit < len(examples):
        examples = random.Random(seed).sample(examples, limit)
    return examples


def run_bench(
    task: Task,
    config: BenchConfig,
    *,
    on_start: Callable[[str, int], None] | None = None,
    on_outcome: Callable[[str, Outcome], None] | None = None,
) -> BenchResult:
    """Run core-only, then (if a guide is given) guide + core, on the same examples."""
    examples = select_examples(task, config.split, config.limit, config.seed)
    if config.program:  # a compiled program beside its own core, alone
        compiled = GCoP.load(config.program)
        config.core, config.guide = compiled.core.lm.model, compiled.guide.lm.model
        systems: list[tuple[str, Any]] = [
            (CORE_ONLY, CoreOnly(compiled.core)),
            (COMPILED, compiled),
        ]
        return _run(systems, examples, task, config, on_start, on_outcome)
    core = Core(config.core, task=task.signature, max_tokens=task.core_max_tokens)
    systems = [(CORE_ONLY, CoreOnly(core))]
    if config.guide:
        guide = Guide(task.strategy_type, config.guide, max_tokens=task.guide_max_tokens)
        systems.append((GUIDED, GCoP(guide, core)))
    return _run(systems, examples, task, config, on_start, on_outcome)


def _run(systems, examples, task: Task, config: BenchConfig, on_start, on_outcome) -> BenchResult:
    ledger = default_cache().ledger
    reports, wall = [], {}
    for name, program in systems:
        if on_start:
            on_start(name, len(examples))
        started = time.perf_counter()
        reports.append(
            evaluate(program, examples, task.metric, system=name,
                     num_threads=config.num_threads,
                     on_outcome=(lambda o, n=name: on_outcome(n, o)) if on_outcome else None)
        )  # fmt: skip
        wall[name] = round(time.perf_counter() - started, 2)
    return BenchResult(config, reports, wall, ledger.as_dict())


def write_result(result: BenchResult, out_dir: Path) -> tuple[Path, Path]:
    """Write `<out>/bench-<task>.json` and an accuracy-vs-cost PNG beside it, atomically."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"bench-{result.config.task}-{result.config.split}-{result.config.seed}"
    json_path, png_path = out_dir / f"{stem}.json", out_dir / f"{stem}.png"
    write_json(json_path, portable(result.as_dict(), out_dir))  # no machine paths
    plot_accuracy_vs_cost(result, png_path)
    return json_path, png_path


def plot_accuracy_vs_cost(result: BenchResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4))
    for report in result.reports:
        acc, cost = report.accuracy, report.cost_per_query
        ax.errorbar(
            cost.estimate * 1e6, acc.estimate,
            yerr=[[acc.estimate - acc.low], [acc.high - acc.estimate]],
            xerr=[[(cost.estimate - cost.low) * 1e6], [(cost.high - cost.estimate) * 1e6]],
            fmt="o", capsize=4, label=report.system,
        )  # fmt: skip
    cfg = result.config
    ax.set_xlabel("cost per query (micro-dollars)")
    ax.set_ylabel("accuracy (95% CI)")
    ax.set_title(f"{cfg.task} {cfg.split}, n={result.reports[0].n}\ncore={cfg.core}", fontsize=9)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as partial:
        fig.savefig(partial, dpi=120, format="png")
    plt.close(fig)
