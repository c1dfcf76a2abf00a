"""Task programs gcop optimizes (math, code): data, strategy types and metrics."""

from __future__ import annotations

from gcop.errors import UnknownTaskError
from gcop.task import Task

TASK_NAMES = ("gsm8k", "math500", "humaneval", "mbpp", "code")


def get_task(name: str) -> Task:
    """The task called `name`; an unknown name is an error listing the known ones."""
    if name in ("gsm8k", "math500"):
        from gcop.programs import math

        return {"gsm8k": math.GSM8K, "math500": math.MATH500}[name]
    if name in ("humaneval", "mbpp", "code"):
        from gcop.programs import code

        return {"humaneval": code.HUMANEVAL, "mbpp": code.MBPP, "code": code.CODE}[name]
    raise UnknownTaskError(f"unknown task {name!r}; known tasks: {', '.join(TASK_NAMES)}")
