"""Is there room for a plan on code? The core alone against the same core given a plan, on
MBPP dev problems, paired per problem (the code twin of guide_probe.py's `--ceiling`).

    python benchmarks/code_ceiling.py --limit 100 --out docs/results/code-ceiling-mbpp-dev.json

Plans come from three writers, each prompted as stage 1 prompts a teacher (the plain adapter,
greedy; read leniently, or decoded under `CodePlan`'s JSON schema with `--constrained`, which
needs the torch loop: about 3x slower here than CTranslate2, which cannot mask logits):
- `reference`: the writer (default the 1.5B coder) also reads the MBPP reference code (stage
  1's `show_reference`); a plan that copies a line of it is a leak and not shown. This is
  the near-oracle plan, the room any guide has on this core.
- `unaided`: the same writer without the reference: a guide stronger than the core, prompted.
- `base`: the untrained guide (default SmolLM2-135M) as `gcop-base` runs it.
The core reads a plan only when it is valid and leak-free, and runs alone otherwise, as GCoP
does. Generated code runs only in the sandbox (`code_metric`). Every call goes through the
call cache. Prints one JSON line; `--out` keeps every plan and verdict.
"""

from __future__ import annotations

import argparse
import json
import os
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import dspy  # noqa: E402
from guide_probe import paired  # noqa: E402  (this folder is on sys.path when run as a script)
from rich.console import Console  # noqa: E402

from gcop.atomic import write_json  # noqa: E402
from gcop.bench import select_examples  # noqa: E402
from gcop.optimizers.sampling import REFERENCE_FIELD, SamplingConfig, Teacher  # noqa: E402
from gcop.program import Core, Guide  # noqa: E402
from gcop.programs import get_task  # noqa: E402
from gcop.progress import progress  # noqa: E402
from gcop.strategy import Validity  # noqa: E402

GREEDY = {"temperature": 0.0}


def write_plan(
    writer: Guide, example: dspy.Example, *, show_reference: bool
) -> tuple[Validity, str | None]:
    """The writer's greedy plan for `example`, with its verdict (the leak check included),
    and its text when the core may be shown it (valid and leak-free), else None."""
    shown = dict(example.inputs())
    if show_reference:
        shown[REFERENCE_FIELD] = str(example.reference)
    plan = writer(**shown, config=GREEDY)
    validity = plan.strategy.check(example) if plan.strategy is not None else plan.validity
    return validity, plan.strategy.render() if validity.ok else None


def summarize(rows: list[dict[str, Any]], writers: list[str]) -> dict[str, Any]:
    """Per writer: paired against the core alone on every problem, and on those shown a plan."""
    alone = [r["alone"] for r in rows]
    summary: dict[str, Any] = {"alone": paired(alone, alone)}
    for name in writers:
        shown = [r for r in rows if r[name]["plan"] is not None]
        on_shown = paired([r["alone"] for r in shown], [r[name]["correct"] for r in shown])
        summary[name] = {**paired(alone, [r[name]["correct"] for r in rows]),
                         "verdicts": dict(Counter(r[name]["verdict"] for r in rows)),
                         "on_plans_shown": {"n": len(shown), **on_shown}}  # fmt: skip
    return summary


def solve_all(
    solve: Callable[[dspy.Example], dict[str, Any]], examples: list[dspy.Example], threads: int
) -> list[dict[str, Any]]:
    """`solve` on every problem, `threads` at a time, in the problems' order, with a progress
    line on stderr (a bar on a terminal; in a log a line every $GCOP_PROGRESS_INTERVAL s), so
    that an hour-long probe shows it is alive before it writes anything."""
    with progress(Console(stderr=True)) as bars, ThreadPoolExecutor(threads) as pool:
        bars.add("problems", len(examples))
        futures = [pool.submit(solve, example) for example in examples]
        for _ in as_completed(futures):
            bars.advance("problems")
        return [future.result() for future in futures]


def probe_parser(description: str) -> argparse.ArgumentParser:
    """The options every MBPP-dev probe shares (this one and core_follow.py)."""
    parser = argparse.ArgumentParser(description=description)
    add = parser.add_argument
    add("--task", default="code", help="a code task; its dev split is MBPP dev")
    add("--split", choices=("train", "dev"), default="dev", help="never test: this is a probe")
    add("--limit", type=int, default=100, help="problems of --split (seeded sample, seed 0)")
    add("--core", default="local/qwen2.5-coder-0.5b-instruct")
    add("--writer", default="local/qwen2.5-coder-1.5b-instruct", help="writes the plans")
    add("--threads", type=int, default=32)
    add("--out", type=Path)
    return parser


def main() -> None:
    parser = probe_parser(__doc__.splitlines()[0])
    add = parser.add_argument
    add("--base-guide", default="local/smollm2-135m-instruct", help="'' to leave it out")
    add("--constrained", action="store_true", help="decode the plans under the JSON schema")
    args = parser.parse_args()

    task = get_task(args.task)
    examples = select_examples(task, args.split, args.limit, 0)
    plan_type = task.strategy_type
    core = Core(args.core, task=task.signature, max_tokens=task.core_max_tokens)

    def teacher(show_reference: bool) -> Teacher:  # as stage 1 builds its teacher
        return Teacher(plan_type, args.writer, show_reference=show_reference,
                       max_tokens=SamplingConfig().max_tokens, adapter="plain",
                       constrained=args.constrained)  # fmt: skip

    writers: dict[str, Guide] = {"reference": teacher(True), "unaided": teacher(False)}
    if args.base_guide:
        writers["base"] = Guide(plan_type, args.base_guide, max_tokens=task.guide_max_tokens)

    def solve(example: dspy.Example) -> dict[str, Any]:
        inputs = dict(example.inputs())
        row: dict[str, Any] = {"id": example.id, "alone": task.metric(example, core(**inputs))}
        for name, writer in writers.items():
            validity, text = write_plan(writer, example, show_reference=name == "reference")
            correct = task.metric(example, core(**inputs, strategy=text))
            row[name] = {"verdict": str(validity.verdict), "reason": validity.reason,
                         "plan": text, "correct": correct}  # fmt: skip
        return row

    rows = solve_all(solve, examples, args.threads)
    summary = {"task": args.task, "split": args.split, "n": len(rows), "core": args.core,
               "writer": args.writer, "base_guide": args.base_guide or None,
               "constrained": args.constrained, **summarize(rows, list(writers))}  # fmt: skip
    print(json.dumps(summary), flush=True)
    if args.out:
        write_json(args.out, {"summary": summary, "problems": rows})


if __name__ == "__main__":
    main()
