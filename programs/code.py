"""Code generation (HumanEval, MBPP): the plan type, code extraction and an execution metric.

A candidate is scored against the benchmark's own tests, never in this process: the tests run
in one sandbox, the candidate in another, and only plain data passes between them
(:mod:`gcop.programs.verdict`), so the candidate cannot forge its own pass.
"""

from __future__ import annotations

import ast
import builtins
import logging
import re
from typing import Any, ClassVar

import dspy
from pydantic import Field

from gcop.programs.verdict import Judgement, judge
from gcop.strategy import Strategy, Validity, Verdict
from gcop.task import Task

log = logging.getLogger(__name__)


class SolveCode(dspy.Signature):
    """Solve the programming problem in Python. Give complete, runnable code that defines the
    requested function with the exact name and signature, with any imports it needs."""

    prompt: str = dspy.InputField(
        desc="the problem: a function signature with docstring, or a description and a test"
    )
    code: str = dspy.OutputField(desc="a complete Python implementation, in a ```python block")


# A line that is Python rather than prose, as Python spells it: lowercase keywords, so
# "Return the sorted list." is a plan step while "return sorted(xs)" is code.
CODE_LINE = re.compile(
    r"```"
    r"|^\s*(?:async\s+)?def\s+\w+\s*\("
    r"|^\s*class\s+\w+\s*[(:]"
    r"|^\s*(?:return|import|yield)\s"
    r"|^\s*from\s+[\w.]+\s+import\s"
    r"|\blambda\b[^:\n]*:",
    re.M,
)
LEAK_MIN_CHARS = 20
"""A reference line shorter than this ("return True", "else:") is too generic to be a leak."""

_NEAR = r"(?:[^.;:\n]|\.(?=\w)){0,40}?"  # within one clause ("math.isclose" is one word)
TAMPERING: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern, re.I), what)
    for pattern, what in (
        (
            r"\b(?:sys\.exit|os\._exit|os\.kill|atexit|excepthook|sys\.modules|__builtins__"
            r"|builtins\.|import builtins|__eq__|__ne__|__hash__|__file__|__code__|__globals__"
            r"|co_consts|f_back|f_locals|_getframe|inspect\.(?:stack|getsource|currentframe)"
            r"|gc\.get_objects|/proc/|(?<![\w.])(?:exit|quit)\s*\()",
            "names interpreter internals a solution never needs",
        ),
        (
            r"\b(?:exit|quit|terminate|abort|kill|stop)\s+(?:the\s+|this\s+|with\s+)?"
            r"(?:whole\s+|entire\s+|running\s+)?(?:program|process|script|interpreter|python)\b"
            r"|\bexit(?:s|ing)?\s+(?:with\s+)?(?:a\s+)?(?:code|status|success|0\b|zero)"
            r"|\bexit\s+(?:code|status)\b"
            rf"|\b(?:exit|quit|terminate|return)\b{_NEAR}\bbefore\b{_NEAR}"
            r"\b(?:tests?|asserts?|assertions?|checks?|check function)\b",
            "exits the program around the tests",
        ),
        (
            rf"\b(?:read|open|print|output|show|dump|display|echo|copy|inspect|look at|extract"
            rf"|parse|load|scan)\b{_NEAR}\b(?:(?:the|its|own)\s+)?(?:test file|tests|test code"
            r"|test cases|test suite|unit tests|assert(?:ion)?s?|expected (?:outputs?|values?"
            r"|results?|answers?)|source (?:code|file)|own (?:file|code|source)|this file"
            r"|program(?:'s)? text|script(?:'s)? text|check function|hidden tests?)\b",
            "reads or prints the tests or the program's own text",
        ),
        (
            rf"\b(?:override|overwrite|redefine|replace|monkey-?patch|patch|shadow|hook|wrap"
            rf"|reassign)\b{_NEAR}\b(?:built-?ins?|print|assert|AssertionError|comparisons?"
            r"|equality|isclose|math module|sys module|exit|the check|the tests?|operators?)\b",
            "patches what the tests rely on",
        ),
        (
            r"\b(?:compares?|comparing|is|be)\s+equal\s+to\s+(?:anything|everything|any\s+value)"
            r"|\balways\s+(?:compares?\s+)?equal\b|\balways\s+(?:returns?\s+)?true\s+"
            r"(?:for|from|on|in)\s+(?:every\s+|any\s+|all\s+)?(?:comparisons?|==|equality)",
            "forges equality",
        ),
        (
            rf"\b(?:skip|bypass|disable|suppress|catch|swallow|silence)\b{_NEAR}"
            r"\b(?:assert(?:ion)?s?|AssertionError|the tests|test cases|unit tests|test suite)\b",
            "dodges the tests",
        ),
        (
            r"\bprint\w*\s+(?:a|the|any)?\s*(?:success|pass(?:ed)?|ok)\s+(?:token|message|marker)",
            "forges a success message",
        ),
    )
)
"""Plans that tell the core to work on the tests rather than the problem (read or print them
or the program, exit around them, patch what they use, forge equality or success). Scored
as leaks: the RL reward gives them its largest penalty, not the neutral 0 of an invalid plan."""


class CodePlan(Strategy):
    """Write a plan for implementing the function: the approach in one sentence, the steps in
    order, and the edge cases to handle. Write no code (no definitions, statements or code
    blocks): the plan is in words, for a programmer who will write the code."""

    task: ClassVar[type[dspy.Signature]] = SolveCode
    max_chars: ClassVar[int] = 1200

    approach: str = Field(description="the algorithm or idea, in one sentence")
    steps: list[str] = Field(description="2 to 8 short steps, in words, in order")
    edge_cases: list[str] = Field(
        default_factory=list, description="0 to 6 inputs the code must handle specially"
    )

    def render(self) -> str:
        lines = [f"Approach: {self.approach.strip()}", "Steps:"]
        lines += [f"{i}. {step.strip()}" for i, step in enumerate(self.steps, 1)]
        if self.edge_cases:
            lines += ["Edge cases:", *(f"- {case.strip()}" for case in self.edge_cases)]
        return "\n".join(lines)

    def violations(self) -> list[str]:
        problems = []
        if not 2 <= len(self.steps) <= 8:
            problems.append(f"{len(self.steps)} steps; a plan has 2 to 8")
        if len(self.edge_cases) > 6:
            problems.append(f"{len(self.edge_cases)} edge cases; at most 6")
        if not self.approach.strip() or any(not s.strip() for s in self.steps + self.edge_cases):
            problems.append("an empty approach, step or edge case")
        texts = [self.approach, *self.steps, *self.edge_cases]
        if code := next((m for t in texts if (m := CODE_LINE.search(t))), None):
            problems.append(f"contains code ({code.group(0).strip()!r}); a plan is in words")
        return problems

    def check(self, example: dspy.Example | None = None) -> Validity:
        """Tampering first (a LEAK, with or without the example), then the usual checks."""
        if reason := self.tampering():
            return Validity(Verdict.LEAK, reason)
        return super().check(example)

    def tampering(self) -> str | None:
        """Why this plan aims at the tests instead of the problem, or None."""
        text = _squash(self.render())
        for pattern, what in TAMPERING:
            if found := pattern.search(text):
                return f"the plan {what} ({found.group(0).strip()!r})"
        return None

    def leaks(self, example: dspy.Example) -> str | None:
        plan = _squash(self.render())
        prompt = _squash(str(example.get("prompt") or ""))
        for line in str(example.get("reference") or "").splitlines():
            line = _squash(line)
            # A line the guide was shown (the prompt) gives nothing away.
            if len(line) >= LEAK_MIN_CHARS and line in plan and line not in prompt:
                return f"the plan copies the reference solution's line {line!r}"
        return None


def _squash(text: str) -> str:
    """Whitespace-insensitive form, so re-indenting a copied line does not hide it."""
    return " ".join(text.split())


FENCE = re.compile(r"```[ \t]*([\w+-]*)[ \t]*\n(.*?)(?:```|\Z)", re.S)
PYTHON_TAGS = {"", "python", "python3", "py"}
FIELD_MARKER = re.compile(r"^\s*\[\[ ## \w+ ## \]\]\s*$", re.M)


def extract_code(prediction: dspy.Prediction) -> str:
    """The candidate program: the last ```python block of the `code` field (else of the raw
    LM text, when the adapter could not parse it), else that whole text. An unclosed fence
    (the core ran out of tokens) counts as a block to the end of the text.

    A `code` field that is neither a block nor Python falls back to the last block of the
    reply's working (`reasoning`, which the plain adapter fills with the whole reply), as
    the math metric falls back to the last number. Under DSPy's ChainOfThought the small
    core writes its reasoning and a block but no `Code:` line, or a `Code:` line that only
    opens the fence, or one that echoes the prompt's placeholder: read from the `code`
    field alone, the 0.5B core's ChainOfThought passed 0 of 164 HumanEval problems, and
    read this way 32 (docs/experiments.md)."""
    text = FIELD_MARKER.sub("", str(prediction.get("code") or prediction.get("raw") or ""))
    blocks = _python_blocks(text)
    if blocks or _is_python(text):
        return blocks[-1] if blocks else text
    working = _python_blocks(FIELD_MARKER.sub("", str(prediction.get("reasoning") or "")))
    return working[-1] if working else text


def _python_blocks(text: str) -> list[str]:
    return [body for tag, body in FENCE.findall(text) if tag.lower() in PYTHON_TAGS]


def _is_python(text: str) -> bool:
    """Non-empty and parses: a `code` field written without a fence."""
    try:
        ast.parse(text)
    except (SyntaxError, ValueError):
        return False
    return bool(text.strip())


def is_humaneval(example: dspy.Example) -> bool:
    """HumanEval rows carry one `check(candidate)` test program in `test`; MBPP rows carry
    assert lines in `tests` and an empty `test`. Every HumanEval/MBPP difference keys on it."""
    return bool(example.get("test"))


def build_program(example: dspy.Example, code: str) -> str:
    """The candidate's module as the callee loads it (never with the tests).

    HumanEval: the prompt always goes first. Every prompt ends in a docstring-only stub,
    which is valid Python, so a body-only completion completes it, while a full definition
    simply replaces it and still gets the prompt's imports (`from typing import List`) and
    helper functions (HumanEval/10, /38, /50), which a model often uses without repeating.
    MBPP: the candidate, then the setup code.
    """
    if is_humaneval(example):
        return f"{example.prompt}{code}\n"
    return f"{code}\n{example.get('test_setup_code') or ''}\n"


def candidate_names(tests: str, context: str) -> list[str]:
    """Names the tests call without defining them (MBPP: the functions under test): the
    judge sends calls of these to the candidate. Raises SyntaxError for broken tests."""
    defined = set(dir(builtins))
    loaded: list[str] = []
    for tree in (ast.parse(context), ast.parse(tests)):
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store | ast.Del):
                defined.add(node.id)
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                defined.add(node.name)
            elif isinstance(node, ast.Import | ast.ImportFrom):
                defined.update((a.asname or a.name).split(".")[0] for a in node.names)
            elif isinstance(node, ast.arg):
                defined.add(node.arg)
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                loaded.append(node.func.id)
    return sorted({name for name in loaded if name not in defined})


TIMEOUT_S = 10.0


def run_tests(example: dspy.Example, code: str, timeout_s: float = TIMEOUT_S) -> Judgement:
    """The candidate against the example's own tests (:mod:`gcop.programs.verdict`); a
    failure of any kind is a failed verdict with its reason, never an exception."""
    try:
        candidate = build_program(example, code)
        if is_humaneval(example):  # check(candidate), the prompt as context
            test = str(example.test)
            context, remote, check = str(example.prompt), [str(example.entry_point)], True
        else:  # MBPP: its asserts call the candidate's functions by name
            context, test = str(example.get("test_setup_code") or ""), "\n".join(example.tests)
            remote = sorted({*candidate_names(test, context), str(example.entry_point)})
            check = False
        return judge(candidate, context, test, entry_point=str(example.entry_point),
                     remote=remote, check=check, timeout_s=timeout_s)  # fmt: skip
    except Exception as e:
        log.warning("code metric: %s could not be scored: %r", example.get("id"), e)
        return Judgement(False, f"not scored: {e!r}", None, None)


def code_metric(example: dspy.Example, prediction: dspy.Prediction, trace: Any = None) -> float:
    """1.0 iff the candidate passes all of the example's tests, as decided by
    :func:`run_tests` (the tests and the candidate in separate sandboxes, only plain data
    between them). Never raises: an unscorable candidate scores 0.0."""
    try:
        code = extract_code(prediction)
    except Exception as e:
        log.warning("code metric: no code in the prediction: %r", e)
        return 0.0
    if not code.strip():
        return 0.0
    return float(run_tests(example, code).passed)


def worked_code(example: dspy.Example) -> str:
    """The reference solution as a whole program: MBPP's code as it is; HumanEval's canonical
    solution is only the body, so the prompt (signature and docstring) goes first."""
    reference = str(example.get("reference") or "").replace("\r\n", "\n")
    return f"{example.prompt}{reference}" if is_humaneval(example) else reference


def core_demo(example: dspy.Example) -> dspy.Example:
    """A solved problem as the core's demo (`core-demos`, the worked solutions DSPy's
    optimizers are given): the prompt -> the reference code in a ```python block."""
    return dspy.Example(
        prompt=example.prompt, code=f"```python\n{worked_code(example).strip()}\n```"
    ).with_inputs("prompt")


def humaneval_example(row: dict[str, Any]) -> dspy.Example:
    return dspy.Example(
        id=row["id"], prompt=row["prompt"], reference=row["canonical_solution"],
        test=row["test"], entry_point=row["entry_point"], tests=[], test_setup_code="",
    ).with_inputs("prompt")  # fmt: skip


def mbpp_example(row: dict[str, Any]) -> dspy.Example:
    """The prompt is the task text plus the first test, which shows the name and call."""
    tests = list(row["tests"])
    prompt = f"{row['prompt'].strip()}\nYour code should pass this test:\n{tests[0]}"
    return dspy.Example(
        id=row["id"], prompt=prompt, reference=row["code"], test="",
        entry_point=row["entry_point"], tests=tests, test_setup_code=row["test_setup_code"],
    ).with_inputs("prompt")  # fmt: skip


def _examples(name: str, part: str) -> list[dspy.Example]:
    from gcop.programs import data

    make = humaneval_example if name == "humaneval" else mbpp_example
    return [make(row) for row in data.split(name, part)]


HUMANEVAL = Task(
    name="humaneval",
    strategy_type=CodePlan,
    metric=code_metric,
    load_split=lambda part: _examples("humaneval", part),
    guide_max_tokens=256,
    core_max_tokens=384,
    core_demo=core_demo,
    description="HumanEval (164 problems, test only: tune code guides on MBPP)",
)

MBPP = Task(
    name="mbpp",
    strategy_type=CodePlan,
    metric=code_metric,
    load_split=lambda part: _examples("mbpp", part),
    guide_max_tokens=256,
    core_max_tokens=384,
    core_demo=core_demo,
    description="MBPP (500 test problems, split 200/100/200)",
)

CODE = Task(
    name="code",
    strategy_type=CodePlan,
    metric=code_metric,
    # HumanEval has no train or dev part, so a code guide is trained and tuned on MBPP and
    # scored on all of HumanEval: a transfer test, never on problems it was tuned on.
    load_split=lambda part: (
        _examples("humaneval", "test") if part == "test" else _examples("mbpp", part)
    ),
    guide_max_tokens=256,
    core_max_tokens=384,
    core_demo=core_demo,
    description="code: train/dev on MBPP (200/100), test on all 164 HumanEval problems",
)

from gcop.registry import register_task  # noqa: E402

for _task in (HUMANEVAL, MBPP, CODE):  # known to `gcop bench`, `gcop compile`, get_task
    register_task(_task)
