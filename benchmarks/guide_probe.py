"""Which guide can help this core? ExecTune's AS stage (the guide prompted with accepted
stage-1 plans as demos) on the dev problems of the ceiling table, paired per problem
against the core alone.

    python benchmarks/guide_probe.py --guide local/qwen2.5-coder-1.5b-instruct \
        --accepted runs/headline-cpu/seed-0/sample/accepted.jsonl

`--demos givens` shows the guide the same accepted problems' plans with every value the
question does not state hidden; `--mask-unstated` hides those values in the guide's own
plans before the core reads them (does the core do better computing them itself?);
`--core-instruction verify` tells the core the plan may be wrong and to work out every
number itself, and also runs the reference plans (the ceiling) under that instruction.
`--core-demos` also runs the core alone with the guide's demo problems as worked solutions
(the reference solution, question -> working -> answer): is the guide's gain only the
demos it was shown? For a trained guide (`--guide 'local/...?adapter=<dir>' --shots 0`),
`--control-shots 3` keeps the control the AS stage's. `--guided-core-demos` gives the
guided core the same problems too, each with the plan the guide was shown and its worked
solution (question -> plan -> working -> answer): does the guide's plan add anything once
the core has the demos? `--ceiling reference` also runs the core on the reference plans
(the near-oracle plans of the ceiling table; `--ceiling givens`: the same with every value
the question does not state hidden), and with `--guided-core-demos` the core shown the
demos too: is there room above the best prompt for any plan? `--split test --limit 300`
reruns the headline's AS stage on its test problems (every call from the cache when the
headline ran) and splits the comparison by whether the plan the core read states the gold
answer (deployment has no gold answer to reject it with).
Every call goes through the call cache. Prints one JSON line; `--out` keeps every plan.
"""

from __future__ import annotations

import argparse
import json
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import dspy  # noqa: E402

from gcop.atomic import write_json  # noqa: E402
from gcop.bench import select_examples  # noqa: E402
from gcop.metrics import wilson  # noqa: E402
from gcop.optimizers.exectune import _few_shot, core_with_guide_demos, demo_block  # noqa: E402
from gcop.optimizers.sampling import Attempt, examples_by_key  # noqa: E402
from gcop.program import Core, GCoP, Guide  # noqa: E402
from gcop.programs import get_task  # noqa: E402
from gcop.stats import discordant, mcnemar_exact  # noqa: E402
from gcop.task import Task  # noqa: E402

VERIFY = (
    "A plan for this problem is given. Use it as a guide to the order of the steps, but "
    "work out every number yourself: the plan may contain mistakes."
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--task", default="gsm8k")
    add("--core", default="local/qwen2.5-coder-1.5b-instruct")
    add("--guide", default="local/qwen2.5-coder-1.5b-instruct")
    add("--accepted", type=Path, required=True, help="a stage-1 accepted.jsonl")
    add("--train", type=int, default=150, help="the compile's training sample (for the demos)")
    add("--demos", choices=("reference", "givens"), default="reference")
    add("--shots", type=int, default=3, help="accepted plans shown as demos")
    add(
        "--control-shots",
        type=int,
        help="accepted problems the --core-demos control shows the core (default: --shots; "
        "set it for a trained guide run with --shots 0)",
    )
    add("--seed", type=int, default=0, help="which block of --shots accepted plans (0: first)")
    add("--split", choices=("dev", "test"), default="dev")
    add("--limit", type=int, default=30, help="problems of --split (seeded sample, seed 0)")
    add("--mask-unstated", action="store_true")
    add("--core-instruction", choices=("follow", "verify"), default="follow")
    add(
        "--core-demos",
        action="store_true",
        help="also the core alone shown the guide's demo problems as worked solutions",
    )
    add(
        "--guided-core-demos",
        action="store_true",
        help="also the guided core shown them, each with its plan (implies --core-demos)",
    )
    add(
        "--ceiling",
        choices=("reference", "givens"),
        help="also the core on plans derived from the reference solution (with the demos "
        "too, under --guided-core-demos): the room a plan leaves above that prompt; "
        "'givens' hides every value the question does not state (structure only)",
    )
    add("--threads", type=int, default=32)
    add("--out", type=Path)
    args = parser.parse_args()

    task = get_task(args.task)
    dev = select_examples(task, args.split, args.limit, 0)
    train = examples_by_key(select_examples(task, "train", args.train, 0))
    plan_type = task.strategy_type
    accepted = [Attempt(**json.loads(line)) for line in args.accepted.read_text().splitlines()]
    if args.demos == "givens":  # the same problems' plans, without the unstated values
        for attempt in demo_block(accepted, args.shots, args.seed):
            plan = plan_type.from_reference(train[attempt.example_id], givens_only=True)
            attempt.strategy = plan.model_dump()
    base = Guide(plan_type, args.guide, max_tokens=task.guide_max_tokens)
    guide = _few_shot(base, list(train.values()), accepted, args.shots, args.seed)  # the AS stage
    core = Core(args.core, task=task.signature, max_tokens=task.core_max_tokens)
    if args.core_instruction == "verify":  # changes the guided prompt only, not the core alone's
        core.guided.signature = core.guided.signature.with_instructions(
            f"{task.signature.instructions.strip()}\n{VERIFY}"
        )

    program = GCoP(guide, core, hide_computed_values=args.mask_unstated)
    args.core_demos |= args.guided_core_demos
    core_with_demos = guided_core_with_demos = None
    if args.core_demos:  # the same training problems, as worked solutions for the core
        shots = args.shots if args.control_shots is None else args.control_shots
        shown = _few_shot(base, list(train.values()), accepted, shots, args.seed)
        core_with_demos = core_with_guide_demos(GCoP(shown, core), list(train.values()),
                                                task.core_demo).core  # fmt: skip
    if args.guided_core_demos:  # the same problems, each with the plan the guide was shown
        guided_core_with_demos = Core(args.core, task=task.signature,
                                      max_tokens=task.core_max_tokens)  # fmt: skip
        guided_core_with_demos.guided.demos = [
            guided_demo(task, train[a.example_id], a.strategy, args.mask_unstated)
            for a in demo_block(accepted, args.shots, args.seed)
        ]
        guided_core_with_demos.alone.demos = core_with_demos.alone.demos  # no usable plan

    def solve(example: dspy.Example) -> dict[str, Any]:
        inputs = dict(example.inputs())
        plan = guide(**inputs)
        # what the core reads, as the program shows it
        shown = program.shown_to_core(plan.strategy, inputs) if plan.validity.ok else None
        text = shown.render() if shown is not None else None
        alone = task.metric(example, core(**inputs))
        guided = task.metric(example, core(**inputs, strategy=text))
        leaks = shown is not None and shown.leaks(example) is not None  # states the answer
        row = {"question": example.question, "gold": example.answer, "plan": text,
               "verdict": str(plan.validity.verdict), "leaks": leaks, "alone": alone,
               "guided": guided}  # fmt: skip
        if core_with_demos is not None:
            row["alone_with_demos"] = task.metric(example, core_with_demos(**inputs))
        if guided_core_with_demos is not None:
            row["guided_with_demos"] = task.metric(
                example, guided_core_with_demos(**inputs, strategy=text)
            )
        if args.ceiling or args.core_instruction == "verify":
            reference = plan_type.from_reference(example, givens_only=args.ceiling == "givens")
            ref_text = reference.render() if reference and reference.check(example).ok else None
            row["ceiling"] = task.metric(example, core(**inputs, strategy=ref_text))
            if args.ceiling and guided_core_with_demos is not None:
                row["ceiling_with_demos"] = task.metric(
                    example, guided_core_with_demos(**inputs, strategy=ref_text)
                )
        return row

    with ThreadPoolExecutor(max_workers=args.threads) as pool:
        rows = list(pool.map(solve, dev))
    result = {"guide": args.guide, "core": args.core, "demos": args.demos, "shots": args.shots,
              "control_shots": args.control_shots, "seed": args.seed, "split": args.split,
              "mask_unstated": args.mask_unstated, "core_instruction": args.core_instruction,
              "ceiling_plans": args.ceiling,
              "n": len(rows), "usable_plans": sum(r["plan"] is not None for r in rows),
              "verdicts": dict(Counter(r["verdict"] for r in rows))}  # fmt: skip
    alone = [r["alone"] for r in rows]
    result["alone"] = paired(alone, alone)["correct"]
    result["guided"] = paired(alone, [r["guided"] for r in rows])
    # Deployment has no gold answer, so a plan that states it reaches the core. Where does
    # the difference fall? (The split follows the guide's success: it describes, and
    # --mask-unstated is the controlled test.)
    for label, leaks in (("leaking_plans", True), ("leak_free_plans", False)):
        part = [r for r in rows if r["leaks"] is leaks]
        result[label] = {"n": len(part), **paired([r["alone"] for r in part],
                                                  [r["guided"] for r in part])}  # fmt: skip
    if "ceiling" in rows[0]:
        result["ceiling"] = paired(alone, [r["ceiling"] for r in rows])
    if core_with_demos is not None:  # is the guide's gain the demos it was shown?
        with_demos = [r["alone_with_demos"] for r in rows]
        result["alone_with_demos"] = paired(alone, with_demos)
        result["guided_vs_alone_with_demos"] = paired(with_demos, [r["guided"] for r in rows])
        if "ceiling" in rows[0]:
            result["ceiling_vs_alone_with_demos"] = paired(with_demos, [r["ceiling"] for r in rows])
    if guided_core_with_demos is not None:  # does the plan add anything to the demos?
        both = [r["guided_with_demos"] for r in rows]
        result["guided_with_demos"] = paired(alone, both)
        result["guided_with_demos_vs_alone_with_demos"] = paired(with_demos, both)
        if "ceiling_with_demos" in rows[0]:  # the room above the best prompt
            ceiling = [r["ceiling_with_demos"] for r in rows]
            result["ceiling_with_demos"] = paired(alone, ceiling)
            result["ceiling_with_demos_vs_alone_with_demos"] = paired(with_demos, ceiling)
    print(json.dumps(result), flush=True)
    if args.out:
        write_json(args.out, {"summary": result, "problems": rows})


def guided_demo(
    task: Task, example: dspy.Example, strategy: dict[str, Any], mask: bool
) -> dspy.Example:
    """A demo for the guided core: question, the plan (as the core would read it), the
    worked solution and the answer."""
    plan = task.strategy_type.model_validate(strategy)
    if mask:
        plan = plan.without_computed_values(dict(example.inputs()))
    return task.core_demo(example).copy(strategy=plan.render())


def paired(alone: list[float], guided: list[float]) -> dict[str, Any]:
    correct = sum(s > 0 for s in guided)
    gained, lost = discordant(alone, guided)
    interval = vars(wilson(correct, len(guided))) if guided else None  # no NaN in the JSON
    return {"correct": correct, "ci": interval, "gained": gained, "lost": lost,
            "mcnemar_p": mcnemar_exact(gained, lost)}  # fmt: skip


if __name__ == "__main__":
    main()
