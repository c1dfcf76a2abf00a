"""`gcop experiment`: a declared grid of methods x cores x seeds on one task and split.

A TOML file (or an :class:`ExperimentConfig`) names the task, the evaluation split, the
methods (registered :class:`Method` s, e.g. `core`, `bootstrap-fewshot`, `exectune-rl`),
the cores, the seeds and the shared settings (guide, teacher, training sizes, the ExecTune
stage options). :func:`run_experiment` runs every *cell* (one method on one core with one
seed) on the same problems, writes each cell's result to `work_dir/cells/...` atomically
the moment it is scored, and at the end aggregates them (:mod:`gcop.experiment_stats`) and
writes the JSON, a markdown table and the accuracy-cost frontier
(:mod:`gcop.experiment_report`).

Resuming is two rules: a cell whose file holds a result is read back, never recomputed; and
every model call goes through the call cache (:mod:`gcop.calls`), so a cell killed half-way,
or a compile it needs, repeats no call when it runs again. A method that raises does not
stop the grid: its cell is written with `status: failed` and the error, the other cells go
on, and a rerun retries the failed cells only. The work folder records the settings
that give cells their meaning (task, split, sizes, guide, teacher, stage options) and
refuses a run with different ones; methods, cores and seeds may be added to a grid later.

The kernel knows methods only through `gcop.registry.methods`: the methods themselves
(which need ExecTune and DSPy's optimizers) live in `gcop.optimizers.methods`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import threading
import time
import tomllib
import traceback
from collections import Counter
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dspy

from gcop.atomic import write_json
from gcop.attempts import begin_attempt, describe, earlier_attempts, end_attempt, peak_rss_gib
from gcop.checks import check_options, without_speed_options
from gcop.errors import BudgetExceededError, ConfigError
from gcop.experiment_stats import CORE_ALONE, FAILED, aggregate
from gcop.metrics import UTILITY_LAMBDAS, Report, evaluate
from gcop.paths import portable
from gcop.program import GCoP
from gcop.task import Task

STAGE_SECTIONS = ("sampling", "sft", "rl", "reward")
"""TOML tables passed to ExecTune's stage dataclasses (SamplingConfig, ...)."""


@dataclass(frozen=True)
class Transfer:
    """Move the guide ExecTune compiled for core `source` (after `stage`) to core `target`:
    evaluated there as it is, and (`retune`) after RL on the target from its adapter."""

    source: str
    target: str
    stage: str = "rl"
    retune: bool = True


@dataclass
class ExperimentConfig:
    """Everything one experiment runs; read from TOML by :func:`load_config`."""

    name: str
    task: str
    methods: list[str]
    cores: list[str]
    seeds: list[int] = field(default_factory=lambda: [0])
    split: str = "test"
    limit: int | None = None
    """Problems of `split` to score (a fixed seeded sample, the same for every cell)."""
    train: int = 200
    dev: int = 50
    guide: str = "local/smollm2-135m-instruct"
    teacher: str | list[str] = "reference"
    exec_samples: int = 4
    """Sampled strategies per problem for the guide-averaged executability (0: greedy only)."""
    threads: int = 16
    lambdas: list[float] = field(default_factory=lambda: list(UTILITY_LAMBDAS))
    budget_dollars: float | None = None
    work_dir: Path | None = None
    """Compiles and cell results; default `runs/experiment-<name>`."""
    results_dir: Path = Path("docs/results")
    stage_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    transfer: list[Transfer] = field(default_factory=list)
    contrasts: list[list[str]] = field(default_factory=list)
    """Extra `[new, old]` method pairs to test against each other, beside the built-in
    ablation (:data:`gcop.experiment_stats.ABLATIONS`)."""
    source: str | None = None
    """The TOML file it came from (the results name the command that reproduces them)."""

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9._-]+", self.name or ""):
            raise ConfigError(f"name={self.name!r}: use letters, digits, '.', '_' or '-'")
        if self.split not in ("train", "dev", "test"):
            raise ConfigError(f"split={self.split!r}: use train, dev or test")
        if not self.methods or not self.cores or not self.seeds:
            raise ConfigError("an experiment needs at least one method, one core and one seed")
        if unknown := set(self.stage_options) - set(STAGE_SECTIONS):
            raise ConfigError(f"unknown tables {sorted(unknown)}; use {', '.join(STAGE_SECTIONS)}")
        for spec in self.transfer:
            movable = ("sft", "rl") if spec.retune else ("sample", "sft", "rl")
            if spec.stage not in movable:
                raise ConfigError(
                    f"transfer stage {spec.stage!r}: use sft or rl (sample too when retune = "
                    "false: a few-shot guide has no adapter to re-tune from)"
                )
        for pair in self.contrasts:
            if len(pair) != 2 or not set(pair) <= set(self.methods):
                raise ConfigError(
                    f"contrasts entry {pair!r}: give two of the listed methods, the new one "
                    'first, e.g. contrasts = [["exectune-sft", "gcop-supervised"]]'
                )
        for key in ("methods", "cores", "seeds"):  # a name listed twice runs once
            setattr(self, key, list(dict.fromkeys(getattr(self, key))))
        self.work_dir = Path(self.work_dir or f"runs/experiment-{self.name}")
        self.results_dir = Path(self.results_dir)

    @property
    def teachers(self) -> list[str]:
        return [self.teacher] if isinstance(self.teacher, str) else list(self.teacher)

    def identity(self) -> dict[str, Any]:
        """What gives a cell its meaning: a work folder made with other values is refused.
        As JSON reads it back (the work folder and the results file record it)."""
        keep = ("task", "split", "limit", "train", "dev", "guide", "teacher", "exec_samples",
                "stage_options")  # fmt: skip
        return json.loads(json.dumps({key: getattr(self, key) for key in keep}, default=str))


def load_config(path: str | Path) -> ExperimentConfig:
    """Read an experiment's TOML file; relative folders in it are relative to the cwd."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"no experiment file {path}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path} is not valid TOML: {error}") from None
    data.setdefault("name", path.stem)
    data["source"] = str(path)
    data["stage_options"] = {key: data.pop(key) for key in STAGE_SECTIONS if key in data}
    data["transfer"] = [check_options(Transfer, spec, f"{path}: [[transfer]] entry {i}")
                        for i, spec in enumerate(data.get("transfer", []), start=1)]  # fmt: skip
    known = {f.name for f in dataclasses.fields(ExperimentConfig)}
    if unknown := set(data) - known:
        raise ConfigError(f"{path}: unknown keys {sorted(unknown)}; known: {sorted(known)}")
    return ExperimentConfig(**data)


# -- methods ------------------------------------------------------------------------------


@dataclass
class MethodContext:
    """What a method needs to build its program for one cell."""

    config: ExperimentConfig
    task: Task
    core: str
    seed: int
    trainset: list[dspy.Example]
    devset: list[dspy.Example]
    memo: dict[Any, Any]
    """Shared by the cells of one run (e.g. a compile several methods read stages of)."""
    transfer: Transfer | None = None
    notes: dict[str, Any] = field(default_factory=dict)
    """What the method wants kept in the cell's result (e.g. the cost of re-tuning)."""
    log: Callable[[str], None] = lambda line: None

    @property
    def stage_options(self) -> dict[str, dict[str, Any]]:
        return self.config.stage_options

    def compile_dir(self, kind: str, core: str | None = None) -> Path:
        folder = self.config.work_dir / "compiles" / kind / slug(core or self.core)
        return folder / f"seed-{self.seed}"


@dataclass(frozen=True)
class Method:
    """One row of the comparison: how to build the program a cell evaluates.

    `baseline`: a candidate for "the best baseline" the paired tests compare against.
    `guided`: a GCoP program (a guide writes strategies), so executability is measured.
    """

    name: str
    description: str
    build: Callable[[MethodContext], dspy.Module]
    baseline: bool = True
    guided: bool = False


# -- cells --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    method: str
    core: str
    seed: int
    transfer: Transfer | None = None

    @property
    def label(self) -> str:
        """The row this cell belongs to (its seeds are aggregated together)."""
        if self.transfer is None:
            return self.method
        return f"{self.method}-{self.transfer.stage} from {self.transfer.source}"

    def path(self, work_dir: Path) -> Path:
        folder = self.method if self.transfer is None else f"{self.method}-{self.transfer.stage}"
        core = slug(self.core) if self.transfer is None else (
            f"{slug(self.transfer.source)}--to--{slug(self.core)}")  # fmt: skip
        return work_dir / "cells" / folder / core / f"seed-{self.seed}.json"

    def program_dir(self, work_dir: Path) -> Path:
        """Where a guided cell saves the program it scored (`GCoP.save`: program.json and
        the guide's adapter), so `gcop bench --program` replays it on any machine.
        Absolute, so that `portable` records it relative to the work folder even when
        `work_dir` is given relative to the cwd."""
        return self.path(work_dir).with_suffix(".program").absolute()


def plan_cells(config: ExperimentConfig) -> list[Cell]:
    """Every cell, in run order: per core and seed the methods in the order given (so the
    stages of one compile run back to back), then the transfer cells. A transfer's target
    that is not one of `cores` gets the core-alone cells its rows are tested against."""
    cells = [Cell(m, core, seed) for core in config.cores for seed in config.seeds
             for m in config.methods]  # fmt: skip
    for spec in config.transfer:
        planned = {(cell.method, cell.core, cell.seed) for cell in cells}
        cells += [Cell(CORE_ALONE, spec.target, seed) for seed in config.seeds
                  if (CORE_ALONE, spec.target, seed) not in planned]  # fmt: skip
        kinds = ("transfer", "retune") if spec.retune else ("transfer",)
        cells += [Cell(kind, spec.target, seed, spec) for seed in config.seeds for kind in kinds]
    return cells


def slug(model: str) -> str:
    """A model string as one folder name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", model).strip("_")[-80:]


# -- running ------------------------------------------------------------------------------

CellCallback = Callable[[int, int, Cell, dict[str, Any], bool], None]
"""`on_cell(index, total, cell, result, reused)`: called once per cell, in order."""

ScoredCallback = Callable[[Cell, int, int], None]
"""`on_scored(cell, done, total)`: called from the scoring threads as each problem (or
sampled strategy) of a cell is scored, so a long cell shows it is moving."""


def run_experiment(
    config: ExperimentConfig,
    *,
    on_cell: CellCallback | None = None,
    log: Callable[[str], None] = lambda line: None,
    on_scored: ScoredCallback | None = None,
    report_only: bool = False,
    only_methods: Collection[str] = (),
    only_seeds: Collection[int] = (),
    reuse: str | Path | None = None,
) -> dict[str, Any]:
    """Run (or resume) every cell of `config`, then write and return the aggregated results.

    `report_only`: run nothing; aggregate the cells finished so far (a grid stopped part-way,
    or still running in another process) and list the rest as `unfinished`.
    `only_methods` / `only_seeds`: run just those cells now (e.g. one seed of the two rows a
    contrast needs, to see early whether it holds); the others are treated as by
    `report_only`, so the tables still cover the whole grid.
    `reuse`: a results file of this experiment (see :func:`reuse_cells`) whose cells are
    taken instead of being run again."""
    from gcop.experiment_report import write_results
    from gcop.registry import get_task, methods

    task = get_task(config.task)
    for name in {*config.methods, *(("transfer", "retune") if config.transfer else ())}:
        methods[name]  # an unknown method fails here, before any call
    check_stage_options(config)  # and a mistyped option
    problems = _select(task, config.split, config.limit)
    trainset = _select(task, "train", config.train)
    devset = _select(task, "dev", config.dev) if config.dev else []
    _claim_work_dir(config, create=not report_only or reuse is not None)
    if reuse is not None:
        log(f"reused {reuse_cells(config, reuse)} cells of {reuse}")
    selected = cell_selection(config, only_methods, only_seeds)
    cells, memo, results, unfinished = plan_cells(config), {}, [], []
    with spend_limit(config):
        for index, cell in enumerate(cells):
            path = cell.path(config.work_dir)
            result = finished_cell(path)
            reused = result is not None
            if result is None and (report_only or not selected(cell)):
                unfinished.append({"label": cell.label, "core": cell.core, "seed": cell.seed,
                                   "attempts": earlier_attempts(path)})  # fmt: skip
                continue
            if result is None:
                interrupted = begin_attempt(path)
                for attempt in interrupted:
                    log(f"{cell.label} ({cell.core}, seed {cell.seed}) was {describe(attempt)}")
                context = MethodContext(config, task, cell.core, cell.seed, trainset, devset,
                                        memo, transfer=cell.transfer, log=log)  # fmt: skip
                result = run_cell(cell, methods[cell.method], context, problems, on_scored,
                                  program_dir=cell.program_dir(config.work_dir))  # fmt: skip
                if interrupted:
                    result["interrupted_attempts"] = interrupted
                result = portable(result, config.work_dir)  # as a rerun reads it back
                write_json(path, result)
                end_attempt(path)
            results.append(result)
            if on_cell:
                on_cell(index, len(cells), cell, result, reused)
    ids = [_id(e, i) for i, e in enumerate(problems)]
    aggregated = aggregate(config, results, ids, unfinished=unfinished)
    write_results(aggregated, config)
    return aggregated


def reuse_cells(config: ExperimentConfig, results_path: str | Path) -> int:
    """Write into the work folder the finished cells of `results_path`, an
    `experiment-NAME.json` made with the same settings (a published grid extended on another
    machine, or a work folder lost with its machine): they are read back, not run again.
    A cell already in the work folder is kept, and a cell this grid does not plan is left
    out. Returns how many cells were written."""
    path = Path(results_path)
    try:
        results = json.loads(path.read_text())
        cells, saved = results["cells"], results.get("identity")
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ConfigError(f"{path} is not an experiment's results file ({error})") from error
    if saved is None:
        raise ConfigError(
            f"{path} does not record the settings its cells were made with (it predates "
            "that record); write it again with --report-only where its work folder is, or, "
            "where that folder is gone, run the grid without --reuse (calls in this "
            "machine's call cache are read back, not made again)"
        )
    if changed := settings_changed(saved, config.identity()):
        raise ConfigError(f"{path} holds cells made with other settings ({', '.join(changed)})")
    planned = {(cell.label, cell.core, cell.seed): cell for cell in plan_cells(config)}
    written = 0
    for result in cells:
        cell = planned.get((result["label"], result["core"], result["seed"]))
        target = cell.path(config.work_dir) if cell else None
        if target is None or result.get("status") == FAILED or target.exists():
            continue
        write_json(target, result)
        written += 1
    return written


def cell_selection(
    config: ExperimentConfig, only_methods: Collection[str], only_seeds: Collection[int]
) -> Callable[[Cell], bool]:
    """Whether a cell is one of those asked for (every cell when nothing is asked for); a
    method or seed the grid does not have is a ConfigError, before any call."""
    moved = ("transfer", "retune", CORE_ALONE) if config.transfer else ()
    methods = list(dict.fromkeys([*config.methods, *moved]))
    asks = ((only_methods, methods, "method"), (only_seeds, config.seeds, "seed"))
    for asked, known, flag in asks:
        if missing := [str(value) for value in asked if value not in known]:
            raise ConfigError(
                f"{flag} {', '.join(missing)} is not in this experiment (it has "
                f"{', '.join(map(str, known))}); add it to the file's {flag}s, or pick one of those"
            )
    return lambda cell: ((not only_methods or cell.method in only_methods)
                         and (not only_seeds or cell.seed in only_seeds))  # fmt: skip


def check_stage_options(config: ExperimentConfig) -> None:
    """Every key of the stage tables against the dataclass its table fills (registered by
    the optimizers in `gcop.registry.stage_tables`): a ConfigError naming the first typo."""
    from gcop.registry import stage_tables

    for table, values in config.stage_options.items():
        check_options(stage_tables[table], values, f"[{table}] of {config.source or config.name}")


@contextlib.contextmanager
def spend_limit(config: ExperimentConfig) -> Iterator[None]:
    """`budget_dollars` on the cores' calls for the run, and the cache's own limit after it
    (a later run in this process, with another budget or none, is not held to this one)."""
    from gcop.calls import SpendLimit, default_cache

    cache = default_cache()
    previous = cache.spend_limit
    if config.budget_dollars is not None:  # core calls stop cleanly; a rerun resumes
        cores = (*config.cores, *(t.target for t in config.transfer))
        cache.spend_limit = SpendLimit(dollars=config.budget_dollars, models=cores)
    try:
        yield
    finally:
        cache.spend_limit = previous


def finished_cell(path: Path) -> dict[str, Any] | None:
    """The result a cell file holds, or None when the cell has yet to run (no file, or a
    failed run: it is retried)."""
    if not path.exists():
        return None
    result = json.loads(path.read_text())
    return None if result.get("status") == FAILED else result


def run_cell(
    cell: Cell, method: Method, context: MethodContext, problems,
    on_scored: ScoredCallback | None = None, program_dir: Path | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Build the cell's program and score it on `problems`: greedy, then (for a guided
    method) `exec_samples` sampled strategies per problem for guide-averaged executability.
    A scored GCoP program is saved to `program_dir` (its path is the cell's `program`):
    a trained adapter is not bit-for-bit reproducible across machines, so a published
    cell is replayed from the program it scored, not by training again.

    An exception in the method, or a spending limit reached while scoring (those problems
    would be left unscored), makes a failed cell: its `error` says why, and a rerun retries
    it. Other failed calls are part of the result (`failed_calls`), as in `gcop bench`."""
    config = context.config
    head = {
        "method": cell.method,
        "label": cell.label,
        "core": cell.core,
        "seed": cell.seed,
        "transfer": dataclasses.asdict(cell.transfer) if cell.transfer else None,
        "baseline": method.baseline,
        "guided": method.guided,
    }
    samples = config.exec_samples if method.guided else 0
    scored = _scored_counter(cell, len(problems) * (1 + samples), on_scored)
    started = time.perf_counter()
    try:
        program = method.build(context)
        built = time.perf_counter()
        report = evaluate(program, problems, context.task.metric, system=cell.label,
                          num_threads=config.threads, on_outcome=scored)  # fmt: skip
        sampled = None
        if samples > 0:
            sampled = evaluate(program, problems, context.task.metric, system=cell.label,
                               samples=samples, num_threads=config.threads,
                               on_outcome=scored)  # fmt: skip
        _raise_spend_limit(report, sampled)
        saved = None
        if program_dir is not None and isinstance(program, GCoP):
            saved = str(program.save(program_dir))
    except Exception as error:  # recorded in the cell; the grid goes on
        return {**head, "status": FAILED, "error": _error(error),
                "wall_seconds": {"total": round(time.perf_counter() - started, 1)}}  # fmt: skip
    return {
        **head,
        "status": "ok",
        **cell_measures(report, config.lambdas),
        "guide_averaged_executability": (
            {**dataclasses.asdict(sampled.executability), "samples": config.exec_samples}
            if sampled and sampled.executability
            else None
        ),  # fmt: skip
        "wall_seconds": {
            "build": round(built - started, 1),
            "score": round(time.perf_counter() - built, 1),
        },  # fmt: skip
        "peak_rss_gib": peak_rss_gib(),  # the process's, so far: is memory getting tight?
        "notes": context.notes,
        "prompt": prompt_of(program),
        "program": saved,
    }


def prompt_of(program: dspy.Module) -> dict[str, dict[str, Any]]:
    """Each predictor's instruction and demos, as the built program was scored with them.

    DSPy's optimizers choose these (BootstrapFewShot the demos, MIPROv2 the instruction
    too), and ExecTune's AS stage the guide's demos: the cell keeps what was chosen, so a
    reader of the results sees the prompt behind a number without replaying the compile.
    A demo keeps the fields the prompt shows, and `augmented` (DSPy's mark of a demo
    bootstrapped from a model's reply, where a labelled one is a training example)."""

    def shown(demo: Any, fields: Collection[str]) -> dict[str, Any]:
        kept = {k: v for k, v in dict(demo).items() if k in fields or k == "augmented"}
        return json.loads(json.dumps(kept, default=str))

    return {
        name: {
            "instructions": predictor.signature.instructions,
            "demos": [shown(demo, predictor.signature.fields) for demo in predictor.demos],
        }
        for name, predictor in program.named_predictors()
    }


def _scored_counter(
    cell: Cell, total: int, on_scored: ScoredCallback | None
) -> Callable[[Any], None] | None:
    """An `on_outcome` for :func:`evaluate` that counts a cell's scored problems (from many
    threads) and reports the count to `on_scored`."""
    if on_scored is None:
        return None
    lock, done = threading.Lock(), [0]

    def scored(_outcome: Any) -> None:
        with lock:
            done[0] += 1
            on_scored(cell, done[0], total)

    return scored


def _raise_spend_limit(*reports: Report | None) -> None:
    """A spending limit hit while scoring fails the cell (rerun with a larger budget)."""
    for report in filter(None, reports):
        for outcome in report.outcomes:
            if (outcome.failed or "").startswith(BudgetExceededError.__name__):
                raise BudgetExceededError(outcome.failed.partition(": ")[2])


def _error(error: BaseException) -> dict[str, str]:
    """What a failed cell keeps of its exception: type, message and the traceback's end."""
    lines = traceback.format_exception(error)
    return {"type": type(error).__name__, "message": str(error),
            "traceback": "".join(lines[-6:])}  # fmt: skip


def cell_measures(report: Report, lambdas: list[float]) -> dict[str, Any]:
    """Accuracy (Wilson), executability, cost per query in total and per role, utility at
    each lambda, and each problem's score (the paired tests need them) and, for a guided
    program, its strategy's verdict (whether the core was shown a plan or answered alone)."""
    greedy = [o for o in report.outcomes if o.sample == 0]
    per_query = max(len(greedy), 1)
    return {
        "n": report.n,
        "accuracy": dataclasses.asdict(report.accuracy),
        "executability": (
            dataclasses.asdict(report.executability) if report.executability else None
        ),
        "valid_rate": dataclasses.asdict(report.valid_rate) if report.valid_rate else None,
        "cost_per_query": dataclasses.asdict(report.cost_per_query),
        "guide_cost_per_query": sum(o.guide_cost for o in greedy) / per_query,
        "core_cost_per_query": sum(o.core_cost for o in greedy) / per_query,
        "utility": {str(lam): report.utility(lam) for lam in lambdas},
        "failed_calls": report.failed_calls,
        "calls": report.calls,
        "cache_hits": report.cache_hits,
        "truncated": {
            "guide": sum(o.guide_truncated for o in greedy),
            "core": sum(o.core_truncated for o in greedy),
        },
        "verdicts": dict(Counter(o.verdict for o in greedy if o.verdict)),
        "scores": {o.example_id: o.score for o in greedy if o.failed is None},
        "verdict_by_problem": {
            o.example_id: o.verdict for o in greedy if o.verdict and o.failed is None
        },  # fmt: skip
    }


def _select(task: Task, split: str, limit: int | None) -> list[dspy.Example]:
    """A fixed seeded sample (seed 0): every cell and seed sees the same problems."""
    from gcop.bench import select_examples

    return select_examples(task, split, limit, 0)


def _id(example: dspy.Example, index: int) -> str:
    return str(example.get("id", f"#{index}"))


def _without_speed_options(identity: dict[str, Any]) -> dict[str, Any]:
    """An experiment's identity without the stage options that change how a compile runs,
    not what it computes (:func:`gcop.checks.speed_options`): adding `micro_batch_size` to
    `[sft]` after a run was killed for memory resumes the same cells."""
    from gcop.registry import stage_tables

    tables = without_speed_options(identity.get("stage_options", {}), dict(stage_tables))
    return {**identity, "stage_options": tables}


def settings_changed(saved: dict[str, Any], identity: dict[str, Any]) -> list[str]:
    """The settings in which a recorded identity differs from this experiment's (none when
    only speed options differ): what the work folder and `--reuse` check."""
    if _without_speed_options(saved) == _without_speed_options(identity):
        return []
    return sorted(k for k in {*saved, *identity} if saved.get(k) != identity.get(k))


def _claim_work_dir(config: ExperimentConfig, *, create: bool = True) -> None:
    """Refuse to mix cells made under other settings into this experiment's folder (or, not
    `create`-ing it, to report on a folder that holds no run of this experiment)."""
    path = config.work_dir / "experiment.json"
    identity = config.identity()
    if not create and not path.exists():
        raise ConfigError(
            f"{config.work_dir} holds no run of this experiment to report on; run it first "
            "(without --report-only), or pass the --work-dir it ran in"
        )
    if path.exists():
        if changed := settings_changed(json.loads(path.read_text()), identity):
            raise ConfigError(
                f"{config.work_dir} holds cells made with other settings ({', '.join(changed)}); "
                "use another work_dir, or delete it to start over"
            )
    else:
        write_json(path, identity)
