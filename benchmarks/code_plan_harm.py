"""Why do plans from the trained 135M guide hurt the 0.5B coder on HumanEval?

In runs/experiment-code-cpu (examples/experiments/code-cpu.toml), the Qwen2.5-Coder-0.5B
core passes fewer HumanEval problems when shown a plan by the SmolLM2-135M guide after SFT
than it does alone. This holds whether the guide was trained by ExecTune (`exectune-sft`) or
on the teacher's plans (`gcop-supervised`). This script replays one seed's cells `core`,
`exectune-sft` and `gcop-supervised` from gcop's call cache only. It sorts every problem
shown a valid plan by how its code fails, guided and alone (wrong answer, runtime error,
reply cut at the token budget, ...). It also counts what the plan changes in the code:
length, example prints, and hard-coded `if ...: return <literal>` special cases.

    export LITELLM_LOCAL_MODEL_COST_MAP=True GCOP_CT2_THREADS=1
    nice -n 19 .venv/bin/python benchmarks/code_plan_harm.py --seed 1

No model is decoded. The call cache's spending limit is $0 on every model, and an uncached
probe call must be refused before the replay starts. Every call must be a cache hit, and the
ledger must count no model call at the end. The programs are built with the grid's own
builders (`core_module`, `guide_module`, `_guide_with_adapter` on the compile's
`sft/adapter`), not by `ExecTune.compile`, which rewrites a finished compile's report when it
reads the compile back. Every replayed score and plan verdict is checked against the cell
files, and any mismatch stops the script. Candidate code runs only in gcop's sandbox
(`gcop.programs.code.run_tests`).

Writes `--out` (the summary counts, and one record per problem shown a valid plan) and the
same tables as Markdown beside it (`.md`). The whole replay (prompts, replies, code) goes to
`--replay-dir` (default runs/code-plan-harm/replay-seed<N>.json), which is not committed.
The by-eye labels of the harmed problems (`MANUAL_SEED1`) were read for seed 1 only. They
are applied only with `--seed 1`, where the harmed problems must be exactly the labelled ones.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import sys
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("GCOP_CT2_THREADS", "1")

import dspy  # noqa: E402
from dspy.utils.callback import BaseCallback  # noqa: E402

from gcop.atomic import write_json, write_text  # noqa: E402
from gcop.calls import CallCache, CallRecord, SpendLimit, default_cache, track_calls  # noqa: E402
from gcop.errors import BudgetExceededError  # noqa: E402
from gcop.experiment import Cell, ExperimentConfig, MethodContext, _select, load_config  # noqa: E402
from gcop.lm import GcopLM  # noqa: E402
from gcop.optimizers.exectune import _guide_with_adapter, _local_base  # noqa: E402
from gcop.optimizers.methods import core_module, guide_module  # noqa: E402
from gcop.program import CoreOnly, GCoP  # noqa: E402
from gcop.programs.code import build_program, extract_code, run_tests  # noqa: E402
from gcop.programs.verdict import Judgement  # noqa: E402
from gcop.registry import get_task  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
GUIDED = {"exectune-sft": "exectune", "gcop-supervised": "supervised"}  # cell -> compile
METHODS = ("core", *GUIDED)
SIDES = ("guided", "alone")
Row = dict[str, Any]
Results = dict[str, dict[str, Row]]  # method -> problem -> replayed row

# By-eye labels of every harmed problem of seed 1 (shown a valid plan; the core alone passed,
# the guided core failed), one per line as `problem label: note`, a note's continuation
# lines indented further. The labels:
# plan_wrong_algorithm: the plan's steps compute something else (wrong operation, wrong
#   return type, flipped condition, ignores part of the spec), and the guided code does that.
# plan_wrong_edge_case: the plan's idea is roughly right or vague, but its "edge cases" give
#   wrong special-case outputs (hard-coded constants, `None` for empty), which the code obeys.
# plan_omits_requirement: the plan leaves out a requirement the core alone handled.
# plan_degenerate: the plan repeats itself.
# truncated_by_example_prints: the function is right, but the reply ran out of its 384
#   tokens printing example calls after it, so the extracted block does not parse.
LABELS = (
    "plan_wrong_algorithm", "plan_wrong_edge_case", "plan_omits_requirement",
    "plan_degenerate", "truncated_by_example_prints",
)  # fmt: skip
MANUAL_SEED1 = """
[exectune-sft]
HumanEval/41 plan_degenerate: plan repeats 'the two cars are now perfectly straight' x5,
    cut at 256 tokens; core writes a long nested if-chain simulation and is cut at 384
HumanEval/52 plan_wrong_algorithm: 'if all >= t return False; if all <= t return True'
    (no 'any >= t -> False')
HumanEval/136 plan_wrong_edge_case: edge case 'if the list is empty, return None' -> code
    returns None instead of (None, None)
HumanEval/5 plan_wrong_algorithm: 'insert delimeter at the beginning / at the end'
    -> [d]+numbers+[d]
HumanEval/53 plan_wrong_algorithm: 'add two numbers to a list using a list comprehension'
    -> add returns [x+y]
HumanEval/63 plan_wrong_edge_case: edge cases 'n is 1 return 1, n is 2 return 2 ... n is 5
    return 24' hard-coded by the core
HumanEval/54 plan_wrong_algorithm: 'check if the first word is the same as the second'
    -> s0 == s1
HumanEval/4 truncated_by_example_prints: plan repeats step 1 twice; code body correct, then
    5+ print() example lines with made-up outputs run past 384 tokens
HumanEval/13 plan_wrong_algorithm: 'initialize result to 0 ... add remainder to result' +
    'both non-zero returns 0' -> sums remainders
HumanEval/67 plan_wrong_algorithm: 'check if apples == fruits' -> int() on every word,
    ValueError
HumanEval/66 plan_wrong_algorithm: 'convert the input string to an ASCII code using ord'
    -> ord(s) on the whole string, TypeError
HumanEval/114 plan_wrong_algorithm: min sub-array sum 'using the max function' -> Kadane
    with max, wrong result
HumanEval/35 plan_wrong_edge_case: edge case 'more than one element, return the maximum of
    the two elements' -> max(l[0], l[1])
HumanEval/3 plan_wrong_algorithm: 'if the operation is less than zero, increment the
    balance by 1' -> never goes below zero
HumanEval/112 plan_wrong_algorithm: plan only checks the input palindrome, never deletes
    the characters of c
HumanEval/111 plan_wrong_algorithm: 'check if it has the same occurrence as the previous
    letter' -> run-length of last letter
HumanEval/135 plan_wrong_algorithm: condition flipped: 'if it is greater than or equal to
    the preceding, update the index'
[gcop-supervised]
HumanEval/143 plan_wrong_algorithm: 'convert the words to integers and sort them'
    -> int('This') raises at the top-level print
HumanEval/82 plan_wrong_algorithm: 'check if each character is a prime number' -> prime
    test on characters
HumanEval/45 plan_wrong_algorithm: 'area = base * height' (no /2)
HumanEval/44 plan_wrong_algorithm: 'convert to base-10 with int, then str'; edge case
    'x < 10 return str' -> str(x)
HumanEval/92 plan_wrong_algorithm: 'check if the input is a tuple or list ... sum of the
    input' -> sum(int), TypeError
HumanEval/59 plan_wrong_algorithm: 'iterate to sqrt(n), if divisible increment
    max_prime_factor' -> largest small divisor
HumanEval/5 plan_wrong_algorithm: 'if the current element is a number, insert it at the
    end' -> delimeter after every element
HumanEval/85 plan_wrong_algorithm: 'return the list with the even elements' -> returns a
    list, not the sum
HumanEval/90 plan_wrong_algorithm: min_index loop; 'return min_index after the loop'
    -> returns lst[min_index+1]
HumanEval/23 plan_wrong_algorithm: strlen: 'if the character is not a digit skip it'
    -> counts non-digits; then print() flood truncates
HumanEval/53 plan_wrong_algorithm: 'add two numbers to a list' -> add returns [x, y]
HumanEval/63 plan_wrong_edge_case: edge cases 'n > 5 return 4, n > 8 return 24'
    hard-coded; fibfib[i-1] on an int then crashes the top-level print
HumanEval/16 plan_wrong_algorithm: 'counter starts at 1; count lowercase letters' -> not
    distinct
HumanEval/54 plan_wrong_algorithm: 'check if the first word is a substring of the second'
    -> s0 in s1
HumanEval/0 plan_wrong_algorithm: 'binary search tree ... closest numbers to the
    threshold' -> BST code, cut at 384 tokens
HumanEval/86 plan_wrong_algorithm: 'remove all spaces and convert to uppercase'
HumanEval/8 plan_wrong_algorithm: only the sum is computed; edge cases 'one element / more
    than one -> (0, 1)' -> product stays 1
HumanEval/13 plan_wrong_algorithm: 'initialize gcd to 1, compute the least common
    multiple'; edge case 'divisor 0 -> return 1'
HumanEval/67 plan_wrong_algorithm: 'check if oranges < apples' -> invented constants 5
    and 6
HumanEval/43 plan_wrong_algorithm: 'return the list of pairs' -> returns a list, not a bool
HumanEval/152 truncated_by_example_prints: code abs-difference correct; example print()
    lines cut at 384 tokens -> syntax error
HumanEval/14 plan_wrong_algorithm: 'for each character check if it is shorter than the
    shortest prefix' -> char comparison
HumanEval/79 plan_omits_requirement: plan never mentions the 'db' wrapper; edge cases 'not
    positive -> empty string'; code returns bare binary
HumanEval/88 plan_wrong_algorithm: 'if the sum is even, remove the element from the sorted
    list' -> pop() on empty list at top-level print
HumanEval/58 plan_wrong_algorithm: 'sort the first list, set() the second, return the
    sorted list' -> returns sorted(l1)
HumanEval/146 plan_wrong_algorithm: 'return the filtered list' -> list, not the count
HumanEval/55 plan_wrong_edge_case: edge cases 'n is 0 or 1 return 1, n > 2 return None';
    step 'fib(n-1) + 1'
HumanEval/49 plan_wrong_edge_case: edge cases 'input 0 -> 1, 1 -> 2, 2 -> 8, 11 -> 1,
    101 -> 2' hard-coded; body n % p
HumanEval/36 plan_wrong_edge_case: edge cases 'n < 10 -> 0, n > 10 -> 2, n is 10 or 11
    -> 3' put first: always returns 2
HumanEval/3 plan_wrong_algorithm: 'filter out operations less than zero; if empty return
    True'
HumanEval/70 plan_wrong_algorithm: 'sort the integers by their absolute values ... swap
    them'
HumanEval/135 plan_wrong_algorithm: condition flipped ('if it is greater than or equal to
    the preceding, update')
HumanEval/116 plan_wrong_algorithm: 'check if it is a binary string with only ones, append
    it' -> a filter, no sort
"""

# Failure categories, in table order (a runtime error's category names its exception).
CATEGORIES = (
    "passed", "wrong_answer", "runtime_error", "syntax_error_truncated", "syntax_error",
    "empty_body", "entry_point_missing", "entry_point_missing_renamed", "signature_changed",
    "timeout", "no_code",
)  # fmt: skip
ALWAYS_SHOWN = ("entry_point_missing", "signature_changed", "timeout")
KEEP_WHEN_SALVAGED = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef,
                      ast.ClassDef)  # fmt: skip


def log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def parse_labels(text: str) -> dict[str, dict[str, dict[str, str]]]:
    """`MANUAL_SEED1` as {method: {problem: {"label", "note"}}}."""
    labels: dict[str, dict[str, dict[str, str]]] = {}
    method, last = "", ""
    for line in text.strip().splitlines():
        if line.startswith("["):
            method = line.strip("[]")
            labels[method] = {}
        elif line.startswith(" "):
            labels[method][last]["note"] += " " + line.strip()
        else:
            head, note = line.split(": ", 1)
            last, label = head.split()
            assert label in LABELS, label
            labels[method][last] = {"label": label, "note": note}
    return labels


# -- no decoding ---------------------------------------------------------------------------


def forbid_model_calls(cache: CallCache, model: str) -> None:
    """Hold every model to $0 and prove it: an uncached probe call must be refused."""
    cache.spend_limit = SpendLimit(dollars=0.0)  # models=(): every model is held to it
    probe = GcopLM(model, max_tokens=4)
    try:
        probe(messages=[{"role": "user", "content": f"uncached probe {uuid.uuid4()}"}])
    except BudgetExceededError as error:
        log(f"probe refused, as it must be: {str(error)[:60]}")
        return
    raise SystemExit("the uncached probe call was NOT refused: stopping before any replay")


class ReplyCollector(BaseCallback):
    """The prompt and reply of each LM call made under `dspy.context(callbacks=[this])`.

    DSPy's own callback hook, so gcop's call path is left as it is; `track_calls` gives the
    matching `CallRecord`s (cached or not, tokens, truncation)."""

    def __init__(self) -> None:
        self.started: dict[str, tuple[str, list[dict[str, Any]]]] = {}
        self.calls: list[tuple[str, list[dict[str, Any]], str]] = []

    def on_lm_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        self.started[call_id] = (instance.model, inputs.get("messages") or [])

    def on_lm_end(self, call_id: str, outputs: Any, exception: Exception | None = None) -> None:
        model, messages = self.started.pop(call_id)
        if exception is None:
            first = (outputs or [""])[0]
            text = first.get("text") if isinstance(first, dict) else first
            self.calls.append((model, messages, text or ""))


def paired_calls(
    collected: list[tuple[str, list[dict[str, Any]], str]], records: list[CallRecord]
) -> list[dict[str, Any]]:
    """One row per call: its prompt and reply with its record. Any uncached call fails."""
    assert len(collected) == len(records), (len(collected), len(records))
    rows = []
    for (model, messages, reply), record in zip(collected, records, strict=True):
        assert model == record.model, (model, record.model)
        if not record.cached:
            raise RuntimeError(f"a model call was made for {model}: the replay is cache-only")
        rows.append({"model": model, "truncated": record.truncated,
                     "completion_tokens": record.completion_tokens,
                     "messages": messages, "reply": reply})  # fmt: skip
    return rows


# -- the programs, as the grid builds them -------------------------------------------------


def sft_program(ctx: MethodContext, kind: str) -> GCoP:
    """`compiled(...).stage_programs["sft"]` of ExecTune/supervised compile `kind`."""
    program = GCoP(guide_module(ctx), core_module(ctx))
    adapter = ctx.compile_dir(kind) / "sft" / "adapter"
    if not (adapter / "adapter_model.safetensors").exists():
        raise SystemExit(f"no trained guide at {adapter}")
    guide = _guide_with_adapter(program.guide, _local_base(program.guide), adapter)
    return program.with_guide(guide)


def build_programs(ctx: MethodContext) -> dict[str, dspy.Module]:
    programs: dict[str, dspy.Module] = {"core": CoreOnly(core_module(ctx))}
    programs.update({name: sft_program(ctx, kind) for name, kind in GUIDED.items()})
    return programs


# -- one problem ---------------------------------------------------------------------------


def prompt_signature(example: dspy.Example) -> list[str] | None:
    for node in ast.parse(example.prompt).body:
        if isinstance(node, ast.FunctionDef) and node.name == example.entry_point:
            return [a.arg for a in node.args.args]
    return None


def is_docstring(node: ast.stmt) -> bool:
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)


def top_level_kind(node: ast.stmt) -> str | None:
    """What a top-level statement after the function does (None: nothing of note)."""
    if isinstance(node, ast.If) and "__name__" in ast.unparse(node.test):
        return "if __name__ block"
    if isinstance(node, ast.Assert):
        return "assert"
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
        return f"call {ast.unparse(node.value.func)}"
    if isinstance(node, ast.Assign | ast.For | ast.While):
        return type(node).__name__.lower()
    return None


def analyse(example: dspy.Example, code: str) -> dict[str, Any]:
    """What the candidate defines and runs at module level, read without running it."""
    info: dict[str, Any] = {"defines": [], "entry_defined": False, "entry_args": None,
                            "syntax_error": None, "top_level": []}  # fmt: skip
    try:
        ast.parse(build_program(example, code))
        info["module_parses"] = True
    except SyntaxError:
        info["module_parses"] = False
    try:
        tree = ast.parse(code)
    except SyntaxError as error:
        info["syntax_error"] = f"{error.msg} (line {error.lineno})"
        tree = None
    for node in tree.body if tree else []:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            info["defines"].append(node.name)
            if node.name == example.entry_point:
                body = [n for n in node.body if not is_docstring(n)]
                info["entry_defined"] = True
                info["entry_args"] = [a.arg for a in node.args.args]
                info["entry_body_empty"] = all(isinstance(n, ast.Pass) for n in body)
        elif kind := top_level_kind(node):
            info["top_level"].append(kind)
    text = ast.unparse(tree) if tree else code
    info["uses_input"] = bool(re.search(r"\binput\s*\(", text))
    info["uses_print"] = bool(re.search(r"\bprint\s*\(", text))
    return info


def last_line(text: str | None) -> str:
    lines = [line for line in (text or "").strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def error_kind(line: str) -> str:
    return line.split(":")[0] or "?"


def classify(example: dspy.Example, code: str, info: dict[str, Any],
             judgement: Judgement | None, truncated: bool) -> str:  # fmt: skip
    """One category per candidate: `passed`, or why it failed."""
    if judgement is not None and judgement.passed:
        return "passed"
    if not code.strip() or judgement is None:
        return "no_code"
    if not info["module_parses"]:
        return "syntax_error_truncated" if truncated else "syntax_error"
    if not info["entry_defined"]:
        return "entry_point_missing" + ("_renamed" if info["defines"] else "")
    if info["entry_args"] != prompt_signature(example):
        return "signature_changed"
    if info.get("entry_body_empty"):
        return "empty_body"
    tested, callee = judgement.judge, judgement.callee
    if any(run is not None and run.status == "timed_out" for run in (tested, callee)):
        return "timeout"
    judge_last = last_line(tested.stderr if tested else "")
    callee_last = last_line(callee.stderr if callee else "")
    if "CandidateError" in judge_last:  # the callee died: at load (top-level code) or a call
        return f"runtime_error:{error_kind(callee_last)}"
    if judge_last.startswith("AssertionError"):
        return "wrong_answer"
    kind = error_kind(judge_last) if judge_last else (judgement.reason or "?")
    if kind == "BrokenPipeError":  # the callee died mid-protocol: a top-level crash
        kind = error_kind(callee_last)
    return f"runtime_error:{kind}"


def core_outcome(example: dspy.Example, prediction: dspy.Prediction,
                 call: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    """The core's code, scored in the sandbox (`run_tests`, as the task's metric does)."""
    code = extract_code(prediction)
    judgement = run_tests(example, code) if code.strip() else None
    judge = judgement.judge if judgement else None
    callee = judgement.callee if judgement else None
    info = analyse(example, code)
    return {
        "reply": call["reply"], "truncated": call["truncated"],
        "completion_tokens": call["completion_tokens"], "code": code, "analysis": info,
        "passed": bool(judgement and judgement.passed),
        "judge_reason": judgement.reason if judgement else "no code",
        "judge_stderr_tail": last_line(judge.stderr) if judge else "",
        "callee_stderr_tail": last_line(callee.stderr) if callee else "",
        "category": classify(example, code, info, judgement, call["truncated"]),
    }  # fmt: skip


def plan_outcome(example: dspy.Example, prediction: dspy.Prediction,
                 call: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    """The guide's plan and its verdict, with the leak check, as the cell's metric runs it."""
    validity, strategy = prediction.get("validity"), prediction.get("strategy")
    if validity is not None and validity.ok and strategy is not None:
        validity = strategy.check(example)
    return {
        "verdict": str(validity.verdict) if validity is not None else None,
        "verdict_reason": validity.reason if validity is not None else None,
        "plan": prediction.get("strategy_text"),
        "guide": {"truncated": call["truncated"], "completion_tokens": call["completion_tokens"]},
    }


def replay_problem(program: dspy.Module, example: dspy.Example, *, core: str) -> dict[str, Any]:
    collector = ReplyCollector()
    with track_calls() as records, dspy.context(callbacks=[collector]):
        prediction = program(**example.inputs())
    calls = paired_calls(collector.calls, records)
    core_calls = [c for c in calls if c["model"] == core]
    guide_calls = [c for c in calls if c["model"] != core]
    assert len(core_calls) == 1 and len(guide_calls) <= 1, [c["model"] for c in calls]
    row: dict[str, Any] = {"calls": calls}
    if guide_calls:
        row.update(plan_outcome(example, prediction, guide_calls[0]))
    row["core"] = core_outcome(example, prediction, core_calls[0])
    return row


def replay(programs: dict[str, dspy.Module], problems: list[dspy.Example], core: str,
           threads: int) -> Results:  # fmt: skip
    results = {}
    for name, program in programs.items():
        with ThreadPoolExecutor(threads) as pool:
            rows = pool.map(partial(replay_problem, program, core=core), problems)
            results[name] = {str(ex.id): row for ex, row in zip(problems, rows, strict=True)}
        passed = sum(r["core"]["passed"] for r in results[name].values())
        log(f"{name}: replayed {len(problems)}, passed {passed}")
    return results


# -- agreement with the cells --------------------------------------------------------------


def check_against_cells(results: Results, cells: dict[str, Row], full: bool) -> Row:
    """Every replayed score and plan verdict must be the cell's; stops on any mismatch."""
    agreement = {}
    for name, rows in results.items():
        saved = cells[name]
        scores = [p for p, r in rows.items() if r["core"]["passed"] != saved["scores"].get(p)]
        verdicts = [p for p, r in rows.items() if name in GUIDED
                    and r.get("verdict") != saved["verdict_by_problem"].get(p)]  # fmt: skip
        if full and set(rows) != set(saved["scores"]):
            raise SystemExit(f"{name}: the replayed problems are not the cell's")
        if scores or verdicts:
            raise SystemExit(f"{name}: the replay disagrees with its cell on scores {scores} "
                             f"and verdicts {verdicts}")  # fmt: skip
        passed = int(sum(saved["scores"][p] for p in rows))
        agreement[name] = {"problems": len(rows), "passed": passed,
                           "score_mismatches": 0, "verdict_mismatches": 0}  # fmt: skip
    return agreement


# -- classification of the problems shown a valid plan --------------------------------------


def salvage(code: str) -> str:
    """Another extraction: cut a truncated block back to its longest parseable prefix, then
    keep only imports, definitions and call-free assignments (no example prints, no tests)."""
    lines = code.split("\n")
    for end in range(len(lines), 0, -1):
        try:
            tree = ast.parse("\n".join(lines[:end]))
            break
        except SyntaxError:
            continue
    else:
        return ""
    kept = [n for n in tree.body if isinstance(n, KEEP_WHEN_SALVAGED) or is_plain_assign(n)]
    return ast.unparse(ast.Module(body=kept, type_ignores=[])) if kept else ""


def is_plain_assign(node: ast.stmt) -> bool:
    return isinstance(node, ast.Assign) and not any(isinstance(x, ast.Call) for x in ast.walk(node))


def passes_salvaged(example: dspy.Example, code: str) -> bool:
    fixed = salvage(code)
    return bool(fixed.strip()) and run_tests(example, fixed).passed


def is_literal(node: ast.expr | None) -> bool:
    try:
        ast.literal_eval(node) if node is not None else None
    except (ValueError, TypeError, SyntaxError, RecursionError):
        return False
    return True


def special_returns(code: str, entry: str) -> int:
    """`if ...: return <literal>` statements in the entry function: hard-coded outputs."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return 0
    functions = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == entry]
    return sum(
        isinstance(node, ast.If) and len(node.body) == 1 and isinstance(node.body[0], ast.Return)
        and is_literal(node.body[0].value)
        for function in functions for node in ast.walk(function)
    )  # fmt: skip


def side_record(outcome: dict[str, Any], entry: str, salvaged: bool) -> dict[str, Any]:
    info = outcome["analysis"]
    return {
        "passed": outcome["passed"], "category": outcome["category"],
        "truncated": outcome["truncated"], "completion_tokens": outcome["completion_tokens"],
        "entry_point_defined": info["entry_defined"], "top_level_code": info["top_level"],
        "uses_input": info["uses_input"],
        "special_case_literal_returns": special_returns(outcome["code"], entry),
        "passes_if_salvaged": salvaged,
    }  # fmt: skip


def shown_problems(results: Results) -> list[tuple[str, str]]:
    return [(m, p) for m in GUIDED for p, row in results[m].items() if row["verdict"] == "valid"]


def salvaged_passes(results: Results, examples: dict[str, dspy.Example],
                    threads: int) -> dict[tuple[str, str], bool]:  # fmt: skip
    """Whether each shown problem's code, guided and alone, passes once salvaged."""
    jobs = {}
    for method, problem in shown_problems(results):
        jobs[(method, problem)] = results[method][problem]["core"]["code"]
        jobs[("core", problem)] = results["core"][problem]["core"]["code"]
    with ThreadPoolExecutor(threads) as pool:
        passes = pool.map(lambda job: passes_salvaged(examples[job[0][1]], job[1]), jobs.items())
        return dict(zip(jobs, passes, strict=True))


def build_records(results: Results, examples: dict[str, dspy.Example],
                  salvaged: dict[tuple[str, str], bool],
                  labels: dict[str, dict[str, dict[str, str]]]) -> list[Row]:  # fmt: skip
    records = []
    for method, problem in shown_problems(results):
        row, entry = results[method][problem], str(examples[problem].entry_point)
        guided = side_record(row["core"], entry, salvaged[(method, problem)])
        alone = side_record(results["core"][problem]["core"], entry, salvaged[("core", problem)])
        records.append({
            "method": method, "problem": problem, "entry_point": entry,
            "verdict": row["verdict"], "plan": row["plan"],
            "harmed": alone["passed"] and not guided["passed"],
            "helped": guided["passed"] and not alone["passed"],
            "guide_truncated": row["guide"]["truncated"],
            "guide_completion_tokens": row["guide"]["completion_tokens"],
            "by_eye": labels.get(method, {}).get(problem),
            "guided": guided, "alone": alone,
        })  # fmt: skip
    return records


def coarse(category: str) -> str:
    return category.split(":")[0]


def side_summary(rows: list[dict[str, Any]], side: str) -> dict[str, Any]:
    sides = [r[side] for r in rows]
    return {
        "categories": dict(Counter(coarse(s["category"]) for s in sides)),
        "runtime_errors": dict(Counter(s["category"].split(":")[1] for s in sides
                                       if s["category"].startswith("runtime_error"))),
        "truncated": sum(s["truncated"] for s in sides),
        "mean_completion_tokens": round(sum(s["completion_tokens"] for s in sides) / len(rows), 1),
        "top_level_code": sum(bool(s["top_level_code"]) for s in sides),
        "uses_input": sum(s["uses_input"] for s in sides),
        "parseable_without_entry_point": sum(not s["entry_point_defined"] and
                                             not s["category"].startswith("syntax") for s in sides),
        "special_case_literal_returns": sum(s["special_case_literal_returns"] for s in sides),
        "passes_if_salvaged": sum(s["passes_if_salvaged"] for s in sides),
    }  # fmt: skip


def summarize(records: list[dict[str, Any]], labelled: bool) -> dict[str, Any]:
    summary = {}
    for method in GUIDED:
        rows = [r for r in records if r["method"] == method]
        harmed = [r for r in rows if r["harmed"]]
        summary[method] = {
            "shown": len(rows), "harmed": len(harmed), "helped": sum(r["helped"] for r in rows),
            "guide_plan_truncated": sum(r["guide_truncated"] for r in rows),
            **{side: side_summary(rows, side) for side in SIDES},
            "harmed_by_category": dict(Counter(r["guided"]["category"] for r in harmed)),
            "harmed_by_eye": dict(Counter(r["by_eye"]["label"] for r in harmed)) if labelled
            else None,
        }  # fmt: skip
    return summary


def check_labels(records: list[dict[str, Any]], labels: dict[str, dict[str, Any]]) -> None:
    """The by-eye labels must cover exactly the harmed problems."""
    for method in GUIDED:
        harmed = {r["problem"] for r in records if r["method"] == method and r["harmed"]}
        if harmed != set(labels[method]):
            raise SystemExit(f"{method}: harmed problems and by-eye labels differ on "
                             f"{sorted(harmed ^ set(labels[method]))}")  # fmt: skip


# -- tables --------------------------------------------------------------------------------


def table(header: list[str], rows: list[list[Any]]) -> list[str]:
    if not rows:
        return ["(none)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]


def outcome_table(summary: dict[str, Any]) -> list[str]:
    header = ["outcome"]
    for method, s in summary.items():
        header += [f"{method} guided ({s['shown']})", "alone"]
    cells = [s[side] for s in summary.values() for side in SIDES]
    seen = {c for side in cells for c in side["categories"]}
    names = [c for c in CATEGORIES if c in seen or c in ALWAYS_SHOWN] + sorted(seen - {*CATEGORIES})
    rows = [[name] + [side["categories"].get(name, 0) for side in cells] for name in names]
    measures = [
        ("core reply truncated (finish_reason=length)", "truncated"),
        ("mean completion tokens", "mean_completion_tokens"),
        ("top-level code after the function (prints, tests)", "top_level_code"),
        ("uses input()", "uses_input"),
        ("parses but has no entry point (renamed or omitted)", "parseable_without_entry_point"),
        ("`if ...: return <literal>` special cases", "special_case_literal_returns"),
        ("passes with salvaged extraction (defs only, cut back)", "passes_if_salvaged"),
    ]
    rows += [[label] + [side[key] for side in cells] for label, key in measures]
    return table(header, rows)


def harmed_table(records: list[dict[str, Any]], method: str) -> list[str]:
    rows = [[r["problem"], r["guided"]["category"], (r["by_eye"] or {}).get("label", "-"),
             (r["by_eye"] or {}).get("note", "-").replace("|", "\\|")]
            for r in records if r["method"] == method and r["harmed"]]  # fmt: skip
    return table(["problem", "guided category", "by eye", "note"], rows)


def markdown(result: dict[str, Any]) -> str:
    summary, agreement = result["summary"], result["replay"]["cells"]
    passes = ", ".join(f"{m} {a['passed']}/{a['problems']}" for m, a in agreement.items())
    lines = [
        f"# Why plans hurt the core on HumanEval: seed {result['seed']}", "",
        f"Written by `{result['command']}`. Replayed from the call cache with "
        f"{result['replay']['model_calls']} model calls; every score and plan verdict matches "
        f"the cells ({passes} passed). The rows below are the problems shown a valid plan.", "",
        *outcome_table(summary), "",
    ]  # fmt: skip
    for method, s in summary.items():
        lines += [f"## {method}", "",
                  f"Harmed (alone passed, guided failed): {s['harmed']}; helped: {s['helped']}; "
                  f"plans cut at the guide's token budget: {s['guide_plan_truncated']}.", "",
                  f"Runtime errors guided: {s['guided']['runtime_errors']}; "
                  f"alone: {s['alone']['runtime_errors']}.", ""]  # fmt: skip
        if s["harmed_by_eye"] is not None:
            by_eye = table(["label", "problems"], sorted(s["harmed_by_eye"].items()))
            lines += ["By-eye labels of the harmed problems (read for seed 1):", "", *by_eye, ""]
        lines += [*harmed_table(result["records"], method), ""]
    return "\n".join(lines)


# -- main ----------------------------------------------------------------------------------


def under_root(path: Path) -> Path:
    return path if path.is_absolute() else ROOT / path


def relative(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--seed", type=int, default=1)
    add("--work-dir", type=Path, default=Path("runs/experiment-code-cpu"))
    add("--config", type=Path, default=Path("examples/experiments/code-cpu.toml"))
    add("--out", type=Path, default=Path("docs/results/code-plan-harm-seed1.json"))
    add("--replay-dir", type=Path, default=Path("runs/code-plan-harm"),
        help="where the whole replay (prompts, replies) goes: replay-seed<N>.json")  # fmt: skip
    add("--threads", type=int, default=2)
    add("--limit", type=int, default=None,
        help="a smoke test on the first N problems (no by-eye label check)")  # fmt: skip
    return parser.parse_args()


def load(config_path: Path, work_dir: Path) -> ExperimentConfig:
    config = load_config(config_path)
    config.work_dir = work_dir
    if config.task != "code" or not set(METHODS) <= set(config.methods):
        raise SystemExit(f"{config_path} is not a code grid with the cells {METHODS}")
    return config


def main() -> None:
    args = parse_args()
    started = time.monotonic()
    config = load(under_root(args.config), under_root(args.work_dir))
    core = config.cores[0]
    task = get_task(config.task)
    problems = _select(task, config.split, config.limit)[: args.limit]
    cell_paths = {m: Cell(m, core, args.seed).path(config.work_dir) for m in METHODS}
    cells = {m: json.loads(path.read_text()) for m, path in cell_paths.items()}

    cache = default_cache()
    forbid_model_calls(cache, core)
    calls_before = cache.ledger.model_calls()
    ctx = MethodContext(config, task, core, args.seed, [], [], {})
    results = replay(build_programs(ctx), problems, core, args.threads)
    model_calls = cache.ledger.model_calls() - calls_before
    if model_calls:
        raise SystemExit(f"{model_calls} model calls were made: the replay must be cache-only")
    agreement = check_against_cells(results, cells, full=args.limit is None)
    replay_path = under_root(args.replay_dir) / f"replay-seed{args.seed}.json"
    write_json(replay_path, {"seed": args.seed, "cells": agreement, "results": results})
    log(f"wrote {relative(replay_path)}")

    labels = parse_labels(MANUAL_SEED1) if args.seed == 1 else {}
    examples = {str(e.id): e for e in problems}
    salvaged = salvaged_passes(results, examples, args.threads)
    records = build_records(results, examples, salvaged, labels)
    if labels and args.limit is None:
        check_labels(records, labels)
    out = under_root(args.out)
    result = {
        "question": __doc__.splitlines()[0],
        "command": " ".join(["nice -n 19 .venv/bin/python benchmarks/code_plan_harm.py",
                             *sys.argv[1:]]),
        "seed": args.seed, "config": relative(under_root(args.config)),
        "cells": {m: relative(path) for m, path in cell_paths.items()},
        "replay": {"path": relative(replay_path), "model_calls": model_calls,
                   "spend_limit_dollars": 0.0, "cells": agreement},
        "by_eye_labels": "read for seed 1 (MANUAL_SEED1)" if labels else None,
        "summary": summarize(records, labelled=bool(labels)),
        "records": records,
        "wall_seconds": round(time.monotonic() - started),
    }  # fmt: skip
    write_json(out, result)
    write_text(out.with_suffix(".md"), markdown(result))
    log(f"wrote {relative(out)} and {relative(out.with_suffix('.md'))} "
        f"in {result['wall_seconds']} s")  # fmt: skip


if __name__ == "__main__":
    main()
