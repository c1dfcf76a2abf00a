"""What every gcop optimizer shares: DSPy's teleprompter contract, stage folders, processes.

A gcop optimizer is a `dspy.teleprompt.Teleprompter`: configuration in `__init__`, work in
`compile(student, *, trainset, teacher=None, valset=None)`, which returns a new program and
never mutates the student. Below that contract sit three things each optimizer would
otherwise re-invent:

- :class:`StageDir`: one folder per stage, and the single rule that says a stage is done
  (its marker exists, written last and atomically), so a rerun reads a finished stage back
  and a killed one resumes;
- :class:`DistributedContext`: rank, world size and whether this is the main process, read
  from the launcher's environment once (`accelerate launch` and torchrun set RANK and
  WORLD_SIZE; every process runs `compile`, the main one alone evaluates and writes);
- the report: one JSON dict saved atomically beside the stages.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import gc
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dspy.teleprompt import Teleprompter

from gcop.atomic import write_json


@dataclass(frozen=True)
class DistributedContext:
    """Where this process sits in a multi-process launch (a single process: rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> DistributedContext:
        return cls(int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")))


@functools.cache
def distributed_context() -> DistributedContext:
    """This process's context, read from the environment once (a launcher sets it before
    Python starts, and it does not change during a run)."""
    return DistributedContext.from_env()


def is_main_process() -> bool:
    """Under `accelerate launch` or torchrun every process runs `compile`: all of them
    train (TRL's DDP/FSDP/DeepSpeed path), rank 0 alone evaluates and writes the report."""
    return distributed_context().is_main


ADAPTER = "adapter"
"""The marker of a training stage: its trained adapter folder, renamed into place last."""


@dataclass(frozen=True)
class StageDir:
    """One stage's folder. The stage is done when its `marker` exists; whoever finishes the
    stage writes the marker last (a file by an atomic write, a folder by an atomic rename),
    so a folder without it is an unfinished stage to resume or redo, never a finished one."""

    path: Path
    marker: str

    @property
    def done(self) -> bool:
        return (self.path / self.marker).exists()

    @property
    def marker_path(self) -> Path:
        return self.path / self.marker

    def finish_json(self, data: Any) -> Path:
        """Write the marker as JSON, atomically: the stage is done from this moment."""
        return write_json(self.marker_path, data)


class GcopOptimizer(Teleprompter):
    """Base of gcop's optimizers: an output folder of stages, the process context, a report.

    Subclasses declare `stage_markers` (stage name -> the file or folder that marks it done)
    and implement `compile`.
    """

    stage_markers: dict[str, str] = {}

    def __init__(self, output_dir: str | Path) -> None:
        super().__init__()
        self.output_dir = Path(output_dir)
        self.dist = distributed_context()
        self.report: dict[str, Any] = {"stages": {}}

    def stage(self, name: str) -> StageDir:
        if name not in self.stage_markers:
            raise KeyError(f"{type(self).__name__} has no stage {name!r}")
        return StageDir(self.output_dir / name, self.stage_markers[name])

    def finished(self, stage: str) -> bool:
        """Whether `output_dir` holds `stage` complete (a rerun reads it back, not redoes it)."""
        return self.stage(stage).done

    def write_output(self, name: str, data: Any) -> Path | None:
        """Write `output_dir/name` as JSON atomically, from the main process only."""
        return write_json(self.output_dir / name, data) if self.dist.is_main else None


def release_memory() -> None:
    """Give back to the system the memory a finished training stage freed.

    glibc keeps freed heap memory for reuse instead of returning it, so a long-lived
    process (a `gcop experiment` grid trains and evaluates many cells in one) kept every
    stage's peak: 13.4 GB after one GRPO stage, 19 GB after the evaluations that followed
    (docs/experiments.md). After an SFT stage on the CPU, `malloc_trim(0)` took the
    process from 5.1 to 1.5 GB resident (docs/benchmarks.md). On a GPU, PyTorch's cache
    of freed blocks goes back too. Written by hand: neither the Trainer nor torch does it.
    """
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):  # not glibc (musl): no trim
            ctypes.CDLL("libc.so.6").malloc_trim(0)
