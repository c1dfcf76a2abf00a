"""Checks that run before any money is spent: each failure names the problem and the fix."""

from __future__ import annotations

import dataclasses
import difflib
import os
import typing
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import dspy
import pydantic

from gcop.errors import ConfigError, GcopError
from gcop.local.spec import LocalModelSpec
from gcop.strategy import Strategy

T = TypeVar("T")

MAX_INPUT_CHARS = 50_000
"""An input longer than this is almost surely a mistake (a whole file pasted into a field)."""


class BadInputError(GcopError, ValueError):
    """A trainset, dataset, model or strategy type that gcop cannot use as given."""


def check_examples(examples: Sequence, input_fields: Sequence[str], name: str = "trainset") -> None:
    """Examples must be non-empty `dspy.Example`s with string inputs, unique and not enormous."""
    if not examples:
        raise BadInputError(f"the {name} is empty; pass at least one dspy.Example")
    seen: dict[tuple, int] = {}
    for i, example in enumerate(examples):
        if not isinstance(example, dspy.Example):
            raise BadInputError(
                f"{name}[{i}] is a {type(example).__name__}, not a dspy.Example; build it with "
                f"dspy.Example(...).with_inputs({', '.join(map(repr, input_fields))})"
            )
        if missing := [f for f in input_fields if f not in example]:
            raise BadInputError(f"{name}[{i}] lacks the input field(s) {missing}")
        for field in input_fields:
            value = example[field]
            if not isinstance(value, str):
                raise BadInputError(
                    f"{name}[{i}].{field} is a {type(value).__name__}; inputs must be text (str)"
                )
            if len(value) > MAX_INPUT_CHARS:
                raise BadInputError(
                    f"{name}[{i}].{field} has {len(value):,} characters (limit "
                    f"{MAX_INPUT_CHARS:,}); shorten it or drop the example"
                )
        key = tuple(example[f] for f in input_fields)
        if key in seen:
            raise BadInputError(
                f"{name}[{i}] repeats the inputs of {name}[{seen[key]}]; remove duplicates "
                "(they would be counted twice)"
            )
        seen[key] = i


def check_strategy_type(strategy_type: object) -> None:
    """A strategy type must be a Strategy subclass with a task signature and a JSON schema."""
    if not (isinstance(strategy_type, type) and issubclass(strategy_type, Strategy)):
        raise BadInputError(f"{strategy_type!r} is not a subclass of gcop.Strategy")
    task = getattr(strategy_type, "task", None)
    if not (isinstance(task, type) and issubclass(task, dspy.Signature)):
        raise BadInputError(
            f"{strategy_type.__name__} has no task signature; set "
            "`task: ClassVar[type[dspy.Signature]] = YourSignature` on the class"
        )
    try:
        strategy_type.model_json_schema()
    except Exception as error:
        raise BadInputError(
            f"{strategy_type.__name__} cannot be rendered as a JSON schema ({error}); use "
            "JSON-serialisable field types (str, int, float, bool, lists and models of them)"
        ) from None


def check_credentials(lm: dspy.BaseLM) -> None:
    """A remote model needs its API key, from the LM's settings or the environment."""
    model = lm.model
    if (
        LocalModelSpec.is_local(model)
        or lm.kwargs.get("api_key")
        or getattr(lm, "client", {}).get("api_key")  # GcopLM keeps client options apart
    ):
        return
    import litellm

    try:
        status = litellm.validate_environment(model=model)
    except Exception:  # an unknown provider is reported by check_model, not here
        return
    missing = [key for key in status.get("missing_keys", []) if not os.environ.get(key)]
    if missing:
        raise BadInputError(
            f"{model} needs {', '.join(missing)}: set it in the environment "
            f"(export {missing[0]}=...) or pass api_key=... to the LM"
        )


def check_options(options: type[T], values: Mapping[str, Any], where: str) -> T:
    """`options(**values)`, where `values` must be keyword arguments the dataclass takes:
    known names, values of the annotated types, and whatever its own `__post_init__` checks,
    so that a typo in a config file fails at once and not hours into a run. pydantic checks
    the types (a model built from the dataclass's fields); the values are not converted."""
    hints = typing.get_type_hints(options)
    names = [f.name for f in dataclasses.fields(options) if f.init]
    model = pydantic.create_model(
        options.__name__, __config__=pydantic.ConfigDict(extra="forbid"),
        **{name: (hints[name], None) for name in names},
    )  # fmt: skip
    try:
        model.model_validate(dict(values))
    except pydantic.ValidationError as error:
        problems = []
        for problem in error.errors(include_url=False):
            name = ".".join(map(str, problem["loc"]))
            if problem["type"] == "extra_forbidden":
                close = difflib.get_close_matches(name, names, n=1)
                problems.append(f"unknown option {name!r}"
                                + (f" (did you mean {close[0]!r}?)" if close else ""))  # fmt: skip
            else:
                problems.append(f"{name} = {problem['input']!r}: {problem['msg']}")
        raise ConfigError(
            f"{where}: {'; '.join(problems)}. Its options: {', '.join(names)}"
        ) from None
    try:
        return options(**values)
    except (TypeError, ValueError) as error:  # a required option missing, __post_init__
        raise ConfigError(f"{where}: {error}") from None


def speed_options(options: type) -> frozenset[str]:
    """The options of a stage dataclass that change how a stage runs (threads, memory), not
    what it computes: fields marked `metadata={"speed": True}`. They are left out of a run's
    identity, so a resumed run may change them (e.g. a smaller micro-batch after running
    out of memory) without being refused as a different run."""
    return frozenset(f.name for f in dataclasses.fields(options) if f.metadata.get("speed"))


def without_speed_options(
    sections: Mapping[str, Any], options: Mapping[str, type]
) -> dict[str, Any]:
    """`sections` (a run's settings: stage name -> its options as a dict) without the
    :func:`speed_options` of each stage's dataclass in `options`; a stage left with no
    option is dropped, other values pass unchanged. Two runs whose results reduce to the
    same are the same run (a compile's folder, an experiment's work folder)."""
    kept: dict[str, Any] = {}
    for name, values in sections.items():
        if isinstance(values, Mapping) and name in options:
            speed = speed_options(options[name])
            values = {key: value for key, value in values.items() if key not in speed}
            if not values:
                continue
        kept[name] = values
    return kept
