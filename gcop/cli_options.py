"""Command-line options generated from config dataclasses: one source of names, defaults, help.

TRL's `HfArgumentParser` turns dataclass fields with `metadata={"help": ...}` into argparse
flags; this does the same for typer, which reads a command's options from its signature.
:func:`config_parameters` makes one `--<prefix>-<field>` option per field (with the field's
default and help), :func:`build_configs` turns the parsed values back into the dataclasses,
whose own `__post_init__` checks then run before any model is loaded. Hand-written because
typer has no dataclass support and the few lines are simpler than a dependency.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from collections.abc import Callable, Mapping
from typing import Annotated, Any

import typer

SIMPLE_TYPES = (bool, int, float, str)


def _option_type(annotation: Any) -> Any | None:
    """The type typer should parse a field as; None for a type that has no flag form."""
    if annotation in SIMPLE_TYPES:
        return annotation
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        simple = [a for a in args if a in SIMPLE_TYPES]
        if type(None) in args and len(simple) == 1:
            return simple[0] | None
        if str in simple:  # e.g. `str | list[str]`: the flag takes the string form
            return str
    return None


def config_parameters(
    configs: Mapping[str, type],
    *,
    aliases: Mapping[str, str] | None = None,
    skip: frozenset[str] = frozenset(),
) -> list[inspect.Parameter]:
    """Keyword parameters `<prefix>_<field>` for every field of every config dataclass.

    `configs` maps a prefix to a dataclass; `aliases` maps "prefix.field" to an extra flag
    name (e.g. {"rl.max_steps": "--rl-steps"}); `skip` names fields ("prefix.field" or just
    "field") that another option sets.
    """
    aliases = aliases or {}
    parameters = []
    for prefix, config in configs.items():
        hints = typing.get_type_hints(config)
        for f in dataclasses.fields(config):
            key = f"{prefix}.{f.name}"
            if f.name in skip or key in skip or not f.init:
                continue
            kind = _option_type(hints[f.name])
            if kind is None:
                continue
            default = f.default
            if default is dataclasses.MISSING:
                if f.default_factory is dataclasses.MISSING:
                    continue  # a required field: the command must set it itself
                default = f.default_factory()
            flag = f"--{prefix}-{f.name}".replace("_", "-")
            names = [flag, aliases[key]] if aliases.get(key, flag) != flag else [flag]
            if kind is bool:
                names = [f"{names[0]}/--no-{names[0][2:]}", *names[1:]]
            option = typer.Option(*names, help=f.metadata.get("help", ""), show_default=True)
            parameters.append(
                inspect.Parameter(
                    f"{prefix}_{f.name}",
                    inspect.Parameter.KEYWORD_ONLY,
                    default=default,
                    annotation=Annotated[kind, option],
                )
            )
    return parameters


def build_configs(configs: Mapping[str, type], values: dict[str, Any]) -> dict[str, Any]:
    """Pop the `<prefix>_<field>` values out of `values` and build each config from them
    (fields without an option keep their defaults, or take `values[field]` for a shared
    option such as `seed`)."""
    built = {}
    for prefix, config in configs.items():
        kwargs = {}
        for f in dataclasses.fields(config):
            name = f"{prefix}_{f.name}"
            if name in values:
                kwargs[f.name] = values.pop(name)
            elif f.name in values and f.init:
                kwargs[f.name] = values[f.name]
        built[prefix] = config(**kwargs)
    return built


def signature_with(
    template: Callable[..., Any], extra: list[inspect.Parameter]
) -> inspect.Signature:
    """`template`'s signature (its `**kwargs` dropped) with `extra` appended: set it as a
    command's `__signature__`, which is where typer reads the command's options from."""
    signature = inspect.signature(template, eval_str=True)
    fixed = [p for p in signature.parameters.values() if p.kind is not p.VAR_KEYWORD]
    return signature.replace(parameters=[*fixed, *extra])
