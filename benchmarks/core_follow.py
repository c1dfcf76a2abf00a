"""Does the core obey a wrong plan? The guided core told to carry out each step of the plan
(gcop's instruction) against the same core told that the problem is the specification and
the plan only a hint, on MBPP dev problems, paired per problem with the core alone.

    compile=runs/experiment-code-cpu/compiles/exectune/local_qwen2.5-coder-0.5b-instruct
    python benchmarks/core_follow.py --limit 100 --trained $compile/seed-1/sft/adapter \\
        --out docs/results/core-follow-mbpp-dev.json

Why: on HumanEval the trained 135M guide's plans cost the 0.5B core (code-cpu grid), and
`benchmarks/code_plan_harm.py` found the guided code to be a faithful translation of a wrong
plan in 46 of 50 harmed problems. A plan can only help if the core follows it, and can only
be harmless if the core does not follow it where it is wrong: this measures both sides, on
good plans (`reference`: the 1.5B writer shown MBPP's reference code, which gained +18
points on this core in `benchmarks/code_ceiling.py`) and on the trained guide's (`trained`,
an adapter trained on MBPP train; dev is held out). MBPP dev, never HumanEval: HumanEval is
the grid's test split, and an instruction picked on it would be tuned on test.

Plans are written as `code_ceiling.py` writes them (greedy, the plain adapter, read
leniently); the core reads a plan only when it is valid and leak-free, and runs alone
otherwise, as GCoP does. Generated code runs only in the sandbox (the task's metric). Every
call goes through the call cache. Prints one JSON line; `--out` keeps every plan and score.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import dspy  # noqa: E402
from code_ceiling import probe_parser, solve_all, write_plan  # noqa: E402  (this folder is on sys.path as a script)
from guide_probe import paired  # noqa: E402

from gcop.atomic import write_json  # noqa: E402
from gcop.bench import select_examples  # noqa: E402
from gcop.local.spec import LocalModelSpec  # noqa: E402
from gcop.optimizers.sampling import SamplingConfig, Teacher  # noqa: E402
from gcop.program import Core, Guide  # noqa: E402
from gcop.programs import get_task  # noqa: E402

HINT = (
    "A plan for this problem is given as a hint. It may be wrong: the problem statement and "
    "its examples are the specification. Use the plan where it agrees with them and ignore "
    "it where it does not."
)
"""The instruction tried in place of gcop's "Follow the given strategy: carry out each step."
(`gcop.program.guided_signature`)."""


def hint_core(core: Core) -> Core:
    """The same core, whose guided prompt calls the plan a hint (the core alone is the same)."""
    hinted = Core(core.lm, task=core.task, adapter=core.adapter_name)
    instructions = f"{core.task.instructions.strip()}\n{HINT}"
    hinted.guided.signature = hinted.guided.signature.with_instructions(instructions)
    return hinted


def summarize(rows: list[dict[str, Any]], writers: list[str]) -> dict[str, Any]:
    """Per writer and instruction: against the core alone on every problem, and on those
    shown a plan; and the hint against the instruction to follow, on the problems shown."""
    alone = [r["alone"] for r in rows]
    summary: dict[str, Any] = {"alone": paired(alone, alone)}
    for name in writers:
        shown = [r for r in rows if r[name]["plan"] is not None]
        entry: dict[str, Any] = {"verdicts": dict(Counter(r[name]["verdict"] for r in rows)),
                                 "shown": len(shown)}  # fmt: skip
        for how in ("follow", "hint"):
            entry[how] = {**paired(alone, [r[name][how] for r in rows]),
                          "on_plans_shown": paired([r["alone"] for r in shown],
                                                   [r[name][how] for r in shown])}  # fmt: skip
        entry["hint_vs_follow"] = paired([r[name]["follow"] for r in rows],
                                         [r[name]["hint"] for r in rows])  # fmt: skip
        summary[name] = entry
    return summary


def main() -> None:
    parser = probe_parser(__doc__.splitlines()[0])
    add = parser.add_argument
    add("--guide", default="local/smollm2-135m-instruct", help="the trained guide's base")
    add("--trained", type=Path, help="the trained guide's LoRA adapter folder")
    args = parser.parse_args()

    task = get_task(args.task)
    examples = select_examples(task, args.split, args.limit, 0)
    plan_type = task.strategy_type
    follow = Core(args.core, task=task.signature, max_tokens=task.core_max_tokens)
    hint = hint_core(follow)
    writers: dict[str, Guide] = {
        "reference": Teacher(plan_type, args.writer, show_reference=True,
                             max_tokens=SamplingConfig().max_tokens, adapter="plain"),
    }  # fmt: skip
    if args.trained:
        if not (args.trained / "adapter_model.safetensors").exists():
            parser.error(f"--trained {args.trained}: no LoRA adapter there")
        model = LocalModelSpec.parse(args.guide).with_adapter(args.trained).format()
        writers["trained"] = Guide(plan_type, model, max_tokens=task.guide_max_tokens)

    def solve(example: dspy.Example) -> dict[str, Any]:
        inputs = dict(example.inputs())
        row: dict[str, Any] = {"id": example.id, "alone": task.metric(example, follow(**inputs))}
        for name, writer in writers.items():
            validity, text = write_plan(writer, example, show_reference=name == "reference")
            scores = {how: row["alone"] if text is None else  # no plan: the core alone
                      task.metric(example, core(**inputs, strategy=text))
                      for how, core in (("follow", follow), ("hint", hint))}  # fmt: skip
            row[name] = {"verdict": str(validity.verdict), "plan": text, **scores}
        return row

    rows = solve_all(solve, examples, args.threads)
    summary = {"task": args.task, "split": args.split, "n": len(rows), "core": args.core,
               "writer": args.writer, "trained": str(args.trained) if args.trained else None,
               "hint": HINT, **summarize(rows, list(writers))}  # fmt: skip
    print(json.dumps(summary), flush=True)
    if args.out:
        write_json(args.out, {"summary": summary, "problems": rows})


if __name__ == "__main__":
    main()
