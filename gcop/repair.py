"""Lenient reading of strategies that small models almost wrote right.

A 135M guide or a 1.5B teacher often writes a usable plan in a near-miss form: JSON in a
code fence or inside prose, a bare array, steps written as objects, or a numbered list where
JSON was asked for. Throwing those away wastes most of stage 1 and leaves RL without signal,
so they are repaired into the strategy type and counted as their own verdict ("repaired").

JSON syntax repair is json-repair's job (the library DSPy itself uses); what is hand-written
here is only what no library does: mapping a repaired value onto a pydantic strategy type's
fields, and reading the plain-text layout that `Strategy.render` writes (headers and
numbered or bulleted lines).
"""

from __future__ import annotations

import re
from typing import Any, get_args, get_origin

import json_repair
from pydantic import BaseModel, ValidationError

ITEM = re.compile(r"^\s*(?:(?:step\s*)?\d+\s*[.):]|[-*•]|step\s*\d+\s*[-:.])\s*(.+?)\s*$", re.I)
"""One list item: `1. x`, `2) x`, `- x`, `* x`, `Step 3: x`."""
FIELD_MARKER = re.compile(r"\[\[ ## \w+ ## \]\]")
"""DSPy ChatAdapter's field markers, which json-repair would read as nested arrays."""
FENCE = re.compile(r"```([\w+-]*)[ \t]*\n?(.*?)(?:```|\Z)", re.S)
PLAN_FENCES = {"", "json", "text", "txt", "markdown", "md", "plaintext"}
"""Fence tags whose content may be a plan; a ```python block is code, never a plan (JSON-like
literals inside it are data, not steps)."""
EXACT_ITEM = re.compile(r"^\d+\.\s+(.+?)\s*$")
"""An item as `Strategy.render` writes it: `1. text`."""
LAYOUT_ITEM = re.compile(r"^\s*(?:\d+\.|-)\s+(.+?)\s*$")
"""An item under a header in a multi-field layout (numbered, or `- ` as CodePlan writes)."""
HEADER = re.compile(r"^\s*[#*_]*\s*([A-Za-z][\w ]{0,40}?)\s*[*_]*\s*:\s*(.*?)\s*$")


def field_header(name: str) -> str:
    """`edge_cases` -> `Edge cases`: the header of a field in the plain-text layout."""
    return name.replace("_", " ").capitalize()


def list_fields(model: type[BaseModel]) -> list[str]:
    return [n for n, f in model.model_fields.items() if get_origin(f.annotation) is list]


def text_items(text: str) -> list[str]:
    """The numbered or bulleted items of `text`, in order (empty if it has none)."""
    return [m.group(1) for line in text.splitlines() if (m := ITEM.match(line))]


def parse_layout(model: type[BaseModel], text: str) -> dict[str, Any] | None:
    """Read the plain-text layout of `Strategy.render`: for a type with one list field and
    nothing else, just numbered lines; otherwise `Header: value` lines for scalar fields and
    a `Header:` line followed by items for list fields. None when `text` is not that layout."""
    fields = model.model_fields
    required = [n for n, f in fields.items() if f.is_required()]
    if list(fields) == list_fields(model) and len(fields) == 1:
        lines = [line for line in text.strip().splitlines() if line.strip()]
        items = [m.group(1) for line in lines if (m := EXACT_ITEM.match(line))]
        return {next(iter(fields)): items} if items and len(items) == len(lines) else None
    by_header = {field_header(n).lower(): n for n in fields}
    values: dict[str, Any] = {}
    current: str | None = None
    for line in text.strip().splitlines():
        if not line.strip():
            continue
        header = HEADER.match(line)
        if header and header.group(1).strip().lower() in by_header:
            current = by_header[header.group(1).strip().lower()]
            rest = header.group(2)
            if current in list_fields(model):
                values[current] = [rest] if rest else []
            else:
                values[current] = rest
            continue
        item = LAYOUT_ITEM.match(line)
        if current in list_fields(model) and item:
            values[current].append(item.group(1))
        elif current is not None and current not in list_fields(model):
            values[current] = f"{values[current]} {line.strip()}".strip()
        else:
            return None
    return values if all(n in values for n in required) else None


def coerce(model: type[BaseModel], value: Any) -> dict[str, Any] | None:
    """Map a repaired JSON value onto `model`'s fields, or None when it cannot be done.

    A bare list fills the type's only list field; a dict with one unknown list-valued key
    does too; list items written as objects (`{"action": ..., "value": ...}`) become the
    text of their values; a dict wrapping the strategy under one key is unwrapped.
    """
    fields = model.model_fields
    lists = list_fields(model)
    if isinstance(value, list):
        if len(lists) != 1:
            return None
        value = {lists[0]: value}
    if not isinstance(value, dict):
        return None
    if len(value) == 1 and not set(value) & set(fields):
        inner = next(iter(value.values()))
        if isinstance(inner, dict | list):
            return coerce(model, inner)
    out: dict[str, Any] = {}
    for key, item in value.items():
        name = key if key in fields else _closest_field(model, key, item)
        if name is None:
            continue
        if name in lists:
            item = item if isinstance(item, list) else [item]
            out[name] = [_as_text(i) for i in item if _as_text(i)]
        elif _wants_str(model, name):
            out[name] = _as_text(item)
        else:
            out[name] = item
    return out or None


def _closest_field(model: type[BaseModel], key: str, item: Any) -> str | None:
    """A key that is not a field name: the field whose name it contains (`plan_steps` ->
    `steps`), or the only list field when the value is a list."""
    normalized = key.lower().replace(" ", "_")
    for name in model.model_fields:
        if name in normalized or normalized in name:
            return name
    lists = list_fields(model)
    if isinstance(item, list) and len(lists) == 1:
        return lists[0]
    return None


def _wants_str(model: type[BaseModel], name: str) -> bool:
    annotation = model.model_fields[name].annotation
    return annotation is str or str in get_args(annotation)


def _as_text(item: Any) -> str:
    if isinstance(item, dict):
        parts = [_as_text(v) for v in item.values()]
        return " ".join(p for p in parts if p).strip()
    if isinstance(item, list):
        return " ".join(_as_text(i) for i in item).strip()
    return "" if item is None else str(item).strip()


def repair(model: type[BaseModel], text: str) -> tuple[BaseModel, str] | str:
    """Try every repair in turn; return (instance, what was repaired) or why none worked."""
    attempts: list[tuple[str, Any]] = []
    text = FIELD_MARKER.sub("", text)
    candidates = [("fenced", m.group(2)) for m in FENCE.finditer(text)
                  if m.group(1).lower() in PLAN_FENCES]  # fmt: skip
    outside_code = FENCE.sub(lambda m: m.group(0) if m.group(1).lower() in PLAN_FENCES else "",
                             text)  # fmt: skip
    candidates.append(("text", outside_code))
    for origin, body in candidates:
        layout = parse_layout(model, body)
        if layout is not None:
            attempts.append((f"plain-text layout ({origin})", layout))
        items = text_items(body)
        lists = list_fields(model)
        others = [n for n, f in model.model_fields.items() if n not in lists and f.is_required()]
        if items and len(lists) == 1 and not others:
            attempts.append((f"list items ({origin})", {lists[0]: items}))
        if "{" in body or "[" in body:
            try:
                loaded = json_repair.loads(body)
            except Exception:  # json-repair raises on some inputs instead of returning ""
                loaded = None
            # several JSON values in one text come back as a list of them: objects first
            values = [v for v in loaded if isinstance(v, dict)] if isinstance(loaded, list) else []
            for candidate in [*values, loaded]:
                if (value := coerce(model, candidate)) is not None:
                    attempts.append((f"JSON ({origin})", value))
    errors = []
    for how, value in attempts:
        try:
            return model.model_validate(value), how
        except ValidationError as error:
            errors.append(f"{how}: {error.errors()[0]['msg']}")
    if errors:
        return "; ".join(errors)[:300]
    return "no JSON, list or plan layout found in the output"
