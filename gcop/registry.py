"""Registries: how the kernel (and its CLI) finds tasks, datasets, optimizers and the
methods `gcop experiment` compares.

The kernel never imports `gcop.programs` or `gcop.optimizers`; those packages, and any
plugin, register what they define here when they are imported (`register_task(...)`,
`@register_optimizer("name")`, `register_dataset(...)`, `register_method(...)`). The first
lookup imports every plugin once, found the way simonw/llm finds its plugins:

- the entry points of the groups `gcop.programs` and `gcop.optimizers` (gcop's own packages
  declare theirs in pyproject.toml; a third-party package declares its own), and
- the modules named in `$GCOP_PLUGINS` (comma-separated import paths), an explicit hook for a
  file that is not an installed package (`GCOP_PLUGINS=my_task gcop bench my-task ...`).

An entry point may name a module (importing it registers) or a callable (called once).
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from gcop.errors import ConfigError, GcopError, UnknownTaskError

if TYPE_CHECKING:
    from gcop.task import Task

PLUGIN_GROUPS = ("gcop.programs", "gcop.optimizers")
PLUGINS_ENV = "GCOP_PLUGINS"

T = TypeVar("T")


class PluginError(GcopError):
    """A plugin (entry point or `$GCOP_PLUGINS` module) failed to load."""


class DatasetSource(Protocol):
    """What the kernel needs of a dataset (`gcop.programs.data.DatasetSpec` is one)."""

    name: str
    description: str

    def pull(self, *, refresh: bool = False) -> Any: ...


_discovery_lock = threading.RLock()
_discovered = False


def discover() -> None:
    """Import every plugin once (entry points, then `$GCOP_PLUGINS`); later calls are free."""
    global _discovered
    with _discovery_lock:
        if _discovered:
            return
        _discovered = True  # set first: a plugin that looks something up must not recurse
        from importlib.metadata import entry_points

        for group in PLUGIN_GROUPS:
            for entry in sorted(entry_points(group=group), key=lambda e: e.name):
                _load(entry.value, lambda entry=entry: entry.load())
        for module in filter(None, os.environ.get(PLUGINS_ENV, "").split(",")):
            _load(module.strip(), lambda module=module: importlib.import_module(module.strip()))


def _load(name: str, load: Callable[[], Any]) -> None:
    try:
        loaded = load()
    except Exception as error:
        raise PluginError(
            f"the gcop plugin {name!r} failed to load ({type(error).__name__}: {error}); "
            f"fix or uninstall it, or remove it from ${PLUGINS_ENV}"
        ) from error
    if callable(loaded) and not isinstance(loaded, type):
        loaded()


class Registry(Mapping[str, T], Generic[T]):
    """Name -> registered object, in registration order. Reading it discovers plugins first."""

    def __init__(self, kind: str, error: type[GcopError] = UnknownTaskError) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._error = error

    def register(self, name: str, item: T) -> T:
        """Add `item` under `name`; registering the same name again replaces it (a module
        re-imported, a test overriding a task)."""
        if not name or not isinstance(name, str):
            raise ValueError(f"a {self.kind} needs a non-empty name, not {name!r}")
        self._items[name] = item
        return item

    def unregister(self, name: str) -> None:
        self._items.pop(name, None)

    def __getitem__(self, name: str) -> T:
        discover()
        try:
            return self._items[name]
        except KeyError:
            if not self._items:  # an install from before the entry points were declared
                raise self._error(
                    f"unknown {self.kind} {name!r}: no {self.kind} is registered, so gcop's "
                    "entry points were not found; reinstall it (`pip install -e .`)"
                ) from None
            known = ", ".join(sorted(self._items))
            raise self._error(
                f"unknown {self.kind} {name!r}; known {self.kind}s: {known}"
            ) from None

    def __iter__(self) -> Iterator[str]:
        discover()
        return iter(list(self._items))

    def __len__(self) -> int:
        discover()
        return len(self._items)


tasks: Registry[Task] = Registry("task")
datasets: Registry[DatasetSource] = Registry("dataset")
optimizers: Registry[type] = Registry("optimizer")
methods: Registry[Any] = Registry("method")
"""Experiment methods (`gcop experiment`): name -> a `gcop.experiment.Method`."""
stage_tables: Registry[type] = Registry("stage table", ConfigError)
"""An experiment file's stage tables (`[sft]`, `[rl]`, ...): name -> the dataclass its keys
fill (`gcop.optimizers.sft.SFTStageConfig`, ...), so a file is checked before any call."""


def register_task(task: Task) -> Task:
    """Make `task` known by its name (to `gcop bench`, `gcop compile`, `get_task`); returns
    it, so a module can write `GSM8K = register_task(Task(...))`."""
    return tasks.register(task.name, task)


def register_dataset(spec: DatasetSource) -> DatasetSource:
    return datasets.register(spec.name, spec)


def register_optimizer(name: str) -> Callable[[type[T]], type[T]]:
    """Class decorator: `@register_optimizer("exectune") class ExecTune(...)`."""

    def decorate(cls: type[T]) -> type[T]:
        optimizers.register(name, cls)
        return cls

    return decorate


def register_method(method: Any) -> Any:
    """Make an experiment method (a `gcop.experiment.Method`) known by its `name`; returns
    it, so a module can write `CORE = register_method(Method(...))`."""
    return methods.register(method.name, method)


def register_stage_table(name: str, options: type) -> type:
    """Name the dataclass an experiment file's `[name]` table fills (its keys, its types)."""
    return stage_tables.register(name, options)


def get_task(name: str) -> Task:
    """The task called `name`; an unknown name is an error listing the known ones."""
    return tasks[name]
