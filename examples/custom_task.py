"""Your own task: a new strategy type and metric on your own data (a JSONL file), in one file.

    python examples/custom_task.py                          # examples/data/unit_questions.jsonl
    python examples/custom_task.py --data my.jsonl --core openai/gpt-4o-mini

A strategy type is a pydantic model: its fields are the format the guide writes, its
docstring the instruction, `task` the DSPy signature the core solves, `violations()` its
constraints and `leaks()` what would give the answer away. `register_task` makes the task
known to `gcop bench` too, when this file is loaded as a plugin:

    GCOP_PLUGINS=custom_task PYTHONPATH=examples gcop bench unit-conversions --limit 8
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import ClassVar

import dspy
from pydantic import Field

from gcop import Core, CoreOnly, GCoP, Guide, Strategy, Task, evaluate, register_task

DATA = Path(__file__).with_name("data") / "unit_questions.jsonl"


class ConvertUnits(dspy.Signature):
    """Answer the unit-conversion question with a single number."""

    question: str = dspy.InputField()
    answer: str = dspy.OutputField(desc="the number only, e.g. 42")


class ConversionPlan(Strategy):
    """Name the units involved and the conversion factors, then the order of operations.
    Do not compute the result."""

    task: ClassVar[type[dspy.Signature]] = ConvertUnits
    max_chars: ClassVar[int] = 400

    units: list[str] = Field(description="the units in the question, e.g. ['m', 'cm']")
    factors: list[str] = Field(description="conversion factors, e.g. ['1 m = 100 cm']")
    steps: list[str] = Field(description="1 to 4 operations, in order, without results")

    def render(self) -> str:
        return "\n".join([f"Units: {', '.join(self.units)}",
                          *(f"Fact: {f}" for f in self.factors),
                          *(f"{i}. {s}" for i, s in enumerate(self.steps, 1))])  # fmt: skip

    def violations(self) -> list[str]:
        return [] if 1 <= len(self.steps) <= 4 else [f"{len(self.steps)} steps; use 1 to 4"]

    def leaks(self, example: dspy.Example) -> str | None:
        answer = str(example.get("answer", ""))
        return f"the plan states the answer {answer}" if answer in " ".join(self.steps) else None


def number(text: str | None) -> str | None:
    found = re.findall(r"-?\d+(?:\.\d+)?", (text or "").replace(",", ""))
    return f"{float(found[-1]):g}" if found else None


def exact_number(example: dspy.Example, prediction: dspy.Prediction, trace=None) -> float:
    return float(number(prediction.get("answer")) == number(example.answer))


def load(path: Path) -> list[dspy.Example]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [dspy.Example(**row).with_inputs("question") for row in rows]


def make_task(path: Path = DATA) -> Task:
    examples = load(path)
    half = len(examples) // 2  # a tiny file: first half to train on, second half to score
    parts = {"train": examples[:half], "dev": examples[half:], "test": examples[half:]}
    return Task(
        name="unit-conversions",
        strategy_type=ConversionPlan,
        metric=exact_number,
        load_split=parts.__getitem__,
        guide_max_tokens=160,
        core_max_tokens=96,
        description=f"unit conversions from {path.name} ({len(examples)} questions)",
    )


TASK = register_task(make_task())  # `gcop bench unit-conversions` when loaded as a plugin


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA, help="JSONL: question, answer, id")
    parser.add_argument("--guide", default="local/smollm2-135m-instruct")
    parser.add_argument("--core", default="local/smollm2-135m-instruct")
    args = parser.parse_args(argv)

    task = make_task(args.data)
    core = Core(args.core, max_tokens=task.core_max_tokens)
    program = GCoP(Guide(task.strategy_type, args.guide, max_tokens=task.guide_max_tokens), core)
    dev = task.load_split("dev")
    print("a strategy:", program(**dev[0].inputs()).strategy_text or "(invalid)")
    for name, system in (("core alone", CoreOnly(core)), ("guide + core", program)):
        report = evaluate(system, dev, task.metric, system=name, num_threads=4)
        print(f"{name:<13} accuracy {report.accuracy}  valid plans {report.valid_rate or '-'}")


if __name__ == "__main__":
    main()
