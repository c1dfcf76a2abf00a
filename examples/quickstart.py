"""Quick start: a guide writes a plan, a local core follows it; compare with the core alone.

    python examples/quickstart.py                       # SmolLM2-135M as guide and core
    python examples/quickstart.py --core local/qwen2.5-coder-0.5b-instruct --limit 20

Runs on a CPU in a few minutes; the models and GSM8K are fetched once (no GPU, no hub needed).
"""

from __future__ import annotations

import argparse

from gcop import Core, CoreOnly, GCoP, Guide, evaluate, get_task


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="gsm8k", help="a registered task (gcop bench --help)")
    parser.add_argument("--guide", default="local/smollm2-135m-instruct")
    parser.add_argument("--core", default="local/smollm2-135m-instruct")
    parser.add_argument("--limit", type=int, default=8, help="dev examples to score")
    args = parser.parse_args(argv)

    task = get_task(args.task)
    guide = Guide(task.strategy_type, args.guide, max_tokens=task.guide_max_tokens)
    core = Core(args.core, max_tokens=task.core_max_tokens)
    program = GCoP(guide, core)

    example = task.load_split("dev")[0]
    prediction = program(**example.inputs())
    print("input:   ", str(next(iter(example.inputs().values())))[:200])
    print("strategy:", prediction.strategy_text or f"(invalid: {prediction.validity.reason})")
    print("output:  ", {k: prediction.get(k) for k in task.signature.output_fields})

    dev = task.load_split("dev")[: args.limit]
    for name, system in (("core alone", CoreOnly(core)), ("guide + core", program)):
        report = evaluate(system, dev, task.metric, system=name, num_threads=8)
        print(
            f"{name:<13} accuracy {report.accuracy}  $/query {report.cost_per_query.estimate:.2e}"
        )


if __name__ == "__main__":
    main()
