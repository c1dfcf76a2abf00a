"""ExecTune end to end at a small size: train a guide for a core on GSM8K, then save it.

    python examples/compile_gsm8k.py                     # reference plans, local models, a CPU
    python examples/compile_gsm8k.py --teacher reference,openai/gpt-4o-mini --train 64
    gcop bench gsm8k --program runs/compile-example/program --limit 50   # score it later

ExecTune is a DSPy teleprompter: `compile(student, trainset=..., valset=...)` returns a new
program and leaves the student as it was. A rerun resumes in `--output-dir`.
"""

from __future__ import annotations

import argparse
import random

from gcop import Core, ExecTune, GCoP, Guide, get_task
from gcop.optimizers import RLStageConfig, SamplingConfig, SFTStageConfig


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="gsm8k", help="a registered task (gcop bench --help)")
    parser.add_argument("--guide", default="local/smollm2-135m-instruct", help="a local model")
    parser.add_argument("--core", default="local/smollm2-135m-instruct")
    parser.add_argument(
        "--teacher",
        default="reference",
        help="stage-1 sources, comma-separated: LiteLLM strings and/or 'reference' (plans "
        "derived from the reference solutions)",
    )
    parser.add_argument("--train", type=int, default=16, help="training examples")
    parser.add_argument("--dev", type=int, default=8, help="dev examples scored after each stage")
    parser.add_argument("--candidates", type=int, default=4, help="teacher strategies/example")
    parser.add_argument("--rl-steps", type=int, default=8, help="GRPO steps")
    parser.add_argument("--output-dir", default="runs/compile-example")
    args = parser.parse_args(argv)

    task = get_task(args.task)
    rng = random.Random(0)
    train, dev = task.load_split("train"), task.load_split("dev")
    trainset = rng.sample(train, min(args.train, len(train)))
    valset = rng.sample(dev, min(args.dev, len(dev)))

    student = GCoP(
        Guide(task.strategy_type, args.guide, max_tokens=task.guide_max_tokens),
        Core(args.core, max_tokens=task.core_max_tokens),
    )
    optimizer = ExecTune(
        teacher=teachers if len(teachers := args.teacher.split(",")) > 1 else teachers[0],
        metric=task.metric,
        sampling=SamplingConfig(candidates=args.candidates, show_reference=True),
        sft=SFTStageConfig(epochs=2, per_device_batch_size=4),
        rl=RLStageConfig(
            max_steps=args.rl_steps,
            per_device_batch_size=4,
            max_completion_length=task.guide_max_tokens,
        ),  # fmt: skip
        output_dir=args.output_dir,
    )
    compiled = optimizer.compile(student, trainset=trainset, valset=valset)
    compiled.save(f"{args.output_dir}/program")

    for stage, row in optimizer.report.get("dev", {}).items():
        accuracy = row["accuracy"]
        print(f"after {stage:<10} dev accuracy {accuracy['estimate']:.2f} "
              f"[{accuracy['low']:.2f}, {accuracy['high']:.2f}] (n={row['n']})")  # fmt: skip
    print(f"saved the compiled program to {args.output_dir}/program")


if __name__ == "__main__":
    main()
