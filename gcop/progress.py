"""Progress that shows wherever the output goes: bars on a terminal, plain lines in a file.

A run whose output is redirected (CI, `nohup`, `> log`) gets no live bar, so a long run
would print nothing for minutes; there it prints one plain line per counter every
`interval` seconds (and when a counter completes), which reads well in any log.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from rich.console import Console

INTERVAL_ENV = "GCOP_PROGRESS_INTERVAL"
SILENT_TICKS = 6
"""A counter that has not moved for this many intervals (30 s by default) is printed anyway."""


def default_interval() -> float:
    """Seconds between plain progress lines (`$GCOP_PROGRESS_INTERVAL`, default 5)."""
    return float(os.environ.get(INTERVAL_ENV, "5"))


@dataclass
class _Counter:
    total: int
    done: int = 0
    started: float = field(default_factory=time.perf_counter)


class PlainProgress:
    """Counters printed as `name  done/total  elapsed` lines, at most every `interval` s."""

    def __init__(self, console: Console, interval: float | None = None) -> None:
        self.console = console
        self.interval = default_interval() if interval is None else interval
        self.counters: dict[str, _Counter] = {}
        self._lock = threading.Lock()
        self._last_print = 0.0

    def add(self, name: str, total: int) -> None:
        with self._lock:
            self.counters[name] = _Counter(total)
            self._print(name)

    def advance(self, name: str, amount: int = 1) -> None:
        with self._lock:
            counter = self.counters[name]
            counter.done += amount
            now = time.perf_counter()
            if counter.done >= counter.total or now - self._last_print >= self.interval:
                self._print(name)

    def remove(self, name: str) -> None:
        """Forget a counter (a cell that ended, finished or failed): it is not ticked again."""
        with self._lock:
            self.counters.pop(name, None)

    def tick(self) -> None:
        """After `SILENT_TICKS` intervals without a line, print each unfinished counter: a
        step that advances nothing for minutes (a model converting or loading before its
        first reply) still shows in a log that it is alive."""
        with self._lock:
            if time.perf_counter() - self._last_print < SILENT_TICKS * self.interval:
                return
            for name, counter in self.counters.items():
                if counter.done < counter.total:
                    self._print(name)

    def _print(self, name: str) -> None:
        counter = self.counters[name]
        elapsed = time.perf_counter() - counter.started
        self.console.print(
            f"{name:<12} {counter.done}/{counter.total}  {elapsed:.0f} s",
            highlight=False, markup=False,
        )  # fmt: skip
        self._last_print = time.perf_counter()


class BarProgress:
    """The same interface over rich's live progress bars (a terminal)."""

    def __init__(self, progress) -> None:
        self.progress = progress
        self.ids: dict[str, int] = {}

    def add(self, name: str, total: int) -> None:
        self.ids[name] = self.progress.add_task(name, total=total)

    def advance(self, name: str, amount: int = 1) -> None:
        self.progress.advance(self.ids[name], amount)

    def remove(self, name: str) -> None:
        if name in self.ids:
            self.progress.remove_task(self.ids.pop(name))


@contextmanager
def progress(console: Console) -> Iterator[PlainProgress | BarProgress]:
    """Bars when `console` is a terminal, plain lines otherwise (and, there, a line every
    `SILENT_TICKS` intervals while a counter waits)."""
    if not console.is_terminal:
        plain = PlainProgress(console)
        with repeating(plain.interval, plain.tick):
            yield plain
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    columns = (TextColumn("{task.description:<10}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())  # fmt: skip
    with Progress(*columns, console=console) as bars:
        yield BarProgress(bars)


@contextmanager
def heartbeat(console: Console, what: str, interval: float | None = None) -> Iterator[None]:
    """While the block runs: a spinner on a terminal; elsewhere a line `what: N s` every
    `interval` seconds (default 6 x the progress interval), so a log shows the run is alive."""
    if console.is_terminal:
        with console.status(what):
            yield
        return
    every = SILENT_TICKS * default_interval() if interval is None else interval
    started = time.perf_counter()
    # The stream the console writes to now: a method that silences a library's prints with
    # `redirect_stdout` (DSPy's optimizers, `gcop.optimizers.methods.quiet`) would otherwise
    # swallow every beat of a compile that runs for many minutes.
    stream = console.file

    def beat() -> None:
        stream.write(f"{what}: {time.perf_counter() - started:.0f} s\n")
        stream.flush()

    with repeating(every, beat):
        yield


@contextmanager
def repeating(every: float, action: Callable[[], None]) -> Iterator[None]:
    """Run `action` every `every` seconds in a daemon thread while the block runs (never
    when `every` is 0: a test's "print every advance")."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(every):
            action()

    thread = threading.Thread(target=loop, daemon=True)
    if every > 0:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        if thread.is_alive():
            thread.join()
