"""Math word problems (GSM8K, MATH-500): the plan type, answer extraction and the metric."""

from __future__ import annotations

import math
import re
from typing import Any, ClassVar

import dspy
from pydantic import Field

from gcop.registry import register_task
from gcop.strategy import Strategy
from gcop.task import Task


class SolveMath(dspy.Signature):
    """Solve the math problem. Reason step by step, then give only the final answer."""

    question: str = dspy.InputField()
    reasoning: str = dspy.OutputField(desc="the step-by-step working")
    answer: str = dspy.OutputField(desc="the final answer only, e.g. 42")


ANSWER_MARKERS = re.compile(
    r"(?:final answer|the answer is|answer\s*[:=]|\\boxed\{|####)\s*(?:is\s*)?[$\\(]*\s*-?\d",
    re.I,
)
"""A stated answer: a marker followed by a number ("the answer is 42", "#### 42"). A step
that only says what to report ("Report the final answer.") is a harmless plan step."""
MIN_STEPS, MAX_STEPS = 1, 10


class MathPlan(Strategy):
    """Write a short numbered plan for solving the problem: what to compute, in which order.
    Do not compute anything and do not state the final answer: the plan is for a solver
    who will carry it out."""

    task: ClassVar[type[dspy.Signature]] = SolveMath
    max_chars: ClassVar[int] = 900

    steps: list[str] = Field(description="1 to 10 short steps, each one action")

    def render(self) -> str:
        return "\n".join(f"{i}. {step.strip()}" for i, step in enumerate(self.steps, 1))

    def violations(self) -> list[str]:
        problems = []
        if not MIN_STEPS <= len(self.steps) <= MAX_STEPS:
            problems.append(f"{len(self.steps)} steps; a plan has {MIN_STEPS} to {MAX_STEPS}")
        if any(not step.strip() for step in self.steps):
            problems.append("an empty step")
        if marker := ANSWER_MARKERS.search(self.render()):
            problems.append(f"states a final answer ({marker.group(0)!r})")
        return problems

    def leaks(self, example: dspy.Example) -> str | None:
        gold = normalize_number(str(example.get("answer", "")))
        if gold is None:
            return None
        # the steps themselves, not the rendered list: its "2." numbering is no leak of a 2
        numbers = {normalize_number(n) for n in NUMBER.findall(" ".join(self.steps))}
        question_numbers = {normalize_number(n) for n in NUMBER.findall(example.question)}
        if gold in numbers and gold not in question_numbers:
            return f"the plan contains the answer {gold}, which the question does not"
        return None

    def without_computed_values(self, inputs: dict[str, Any]) -> MathPlan:
        """Every number the question does not state becomes "that amount"."""
        question = str(inputs.get("question", ""))
        return type(self)(steps=[hide_unstated_numbers(step, question) for step in self.steps])

    @classmethod
    def from_reference(cls, example: dspy.Example, *, givens_only: bool = False) -> MathPlan | None:
        """The reference solution's reasoning with its results taken out: each line of a
        GSM8K solution (`She sold 48/2 = <<48/2=24>>24 clips.` -> `She sold 48/2 clips.`),
        or each sentence of a MATH solution without its boxed answer. Steps that would
        still give the answer away (the gold number, a stated answer) are dropped, and the
        plan is cut to the length budget; None when nothing is left.

        Such plans still carry the reference's intermediate results (`So he makes $180*7 a
        week`), which a small guide trained on them cannot compute and learns to invent.
        `givens_only` also replaces every number the question does not state with "that
        amount" (`So he makes that amount*7 a week`): the plan's structure without values."""
        body = _solution_body(example)
        if "<<" in body:  # GSM8K: calculator annotations mark every result
            lines = [_drop_results(line) for line in body.splitlines()]
        else:
            text = re.sub(r"\\boxed\{(?:[^{}]|\{[^{}]*\})*\}", "", body)
            lines = re.split(r"(?<=[.!?])\s+(?=[A-Z\\$])", " ".join(text.split()))
        steps = []
        for line in lines:
            step = " ".join(line.split()).strip(" .,;")
            if givens_only:
                step = hide_unstated_numbers(step, str(example.get("question", "")))
            if not step or ANSWER_MARKERS.search(step) or cls(steps=[step]).leaks(example):
                continue
            if len(cls(steps=[*steps, f"{step}."]).render()) > cls.max_chars:
                break
            steps.append(f"{step}.")
            if len(steps) == MAX_STEPS:
                break
        return cls(steps=steps) if steps else None


RESULT = re.compile(r"\s*=\s*<<[^>]*>>\s*\$?-?[\d,]*\.?\d+%?|<<[^>]*>>")
"""A GSM8K result: `= <<expr=value>>value`, or a bare `<<...>>` annotation."""


def worked_solution(example: dspy.Example) -> str:
    """The reference solution as a person writes it out, for a few-shot demo of the core:
    GSM8K's calculator annotations (`<<48/2=24>>`) and its `#### answer` line removed."""
    return re.sub(r"<<[^>]*>>", "", _solution_body(example)).strip()


def core_demo(example: dspy.Example) -> dspy.Example:
    """A solved problem as the core's demo: question -> worked solution -> answer."""
    return dspy.Example(
        question=example.question, reasoning=worked_solution(example), answer=example.answer
    ).with_inputs("question")


def _solution_body(example: dspy.Example) -> str:
    """The reference solution without GSM8K's final `#### answer` line."""
    return str(example.get("solution") or "").split("####", 1)[0]


def hide_unstated_numbers(step: str, question: str) -> str:
    """`step` with every number `question` does not state replaced by "that amount"."""
    givens = {normalize_number(n) for n in NUMBER.findall(question)}
    return UNSIGNED_NUMBER.sub(
        lambda m: m.group(0) if normalize_number(m.group(0)) in givens else "that amount", step
    )


def _drop_results(line: str) -> str:
    return re.sub(r"\s*=\s*\$?-?[\d,]*\.?\d+(?=\D*$)", "", RESULT.sub("", line))


NUMBER = re.compile(r"-?\$?\d[\d,]*(?:\.\d+)?")
UNSIGNED_NUMBER = re.compile(r"\$?\d[\d,]*(?:\.\d+)?")
"""A number without a sign (the "-" of `25-8` is the operator)."""


def normalize_number(text: str) -> str | None:
    """'1,234.50' -> '1234.5'; None when `text` holds no number."""
    match = NUMBER.search(text or "")
    if not match:
        return None
    raw = match.group(0).replace(",", "").replace("$", "")
    try:
        value = float(raw)
    except ValueError:
        return None
    if not math.isfinite(value):  # hundreds of digits (a model repeating one): kept exact
        sign = "-" if raw.startswith("-") else ""
        whole, _, fraction = raw.lstrip("-").partition(".")
        whole, fraction = whole.lstrip("0") or "0", fraction.rstrip("0")
        return f"{sign}{whole}.{fraction}" if fraction else f"{sign}{whole}"
    return str(int(value)) if value == int(value) else repr(value)


def extract_answer(prediction: dspy.Prediction) -> str | None:
    """The predicted final number: the `answer` field, else the last number in the raw text."""
    answer = prediction.get("answer")
    if answer and (number := normalize_number(str(answer))) is not None:
        return number
    text = prediction.get("raw") or prediction.get("reasoning") or ""
    numbers = NUMBER.findall(str(text))
    return normalize_number(numbers[-1]) if numbers else None


def gsm8k_metric(example: dspy.Example, prediction: dspy.Prediction, trace=None) -> float:
    predicted = extract_answer(prediction)
    return float(predicted is not None and predicted == normalize_number(example.answer))


def _boxed_equal(gold: str, predicted: str) -> bool:
    def canon(s: str) -> str:
        s = re.sub(r"\\(left|right|!|,|;|\s)", "", s or "")
        s = s.replace("dfrac", "frac").replace("tfrac", "frac").replace("$", "")
        return re.sub(r"\s+", "", s).rstrip(".")

    return canon(gold) == canon(predicted)


def math500_metric(example: dspy.Example, prediction: dspy.Prediction, trace=None) -> float:
    answer = str(prediction.get("answer") or "")
    if _boxed_equal(example.answer, answer):
        return 1.0
    gold_number, predicted_number = normalize_number(example.answer), extract_answer(prediction)
    numeric_gold = re.fullmatch(r"-?[\d,]*\.?\d+", example.answer.strip()) is not None
    return float(numeric_gold and gold_number is not None and gold_number == predicted_number)


def _examples(name: str, part: str) -> list[dspy.Example]:
    from gcop.programs import data

    rows = data.split(name, part)
    question = data.spec(name).prompt_column
    return [
        dspy.Example(id=row["id"], question=row[question], answer=row["answer"],
                     solution=row["solution"]).with_inputs("question")
        for row in rows
    ]  # fmt: skip


GSM8K = Task(
    name="gsm8k",
    strategy_type=MathPlan,
    metric=gsm8k_metric,
    load_split=lambda part: _examples("gsm8k", part),
    guide_max_tokens=200,
    core_max_tokens=320,
    description="GSM8K grade-school math (1319 test problems, split 819/200/300)",
    core_demo=core_demo,
)

MATH500 = Task(
    name="math500",
    strategy_type=MathPlan,
    metric=math500_metric,
    load_split=lambda part: _examples("math500", part),
    guide_max_tokens=256,
    core_max_tokens=512,
    description="MATH-500 competition math (split 250/100/150)",
    core_demo=core_demo,
)


for _task in (GSM8K, MATH500):  # known to `gcop bench`, `gcop compile`, get_task
    register_task(_task)
