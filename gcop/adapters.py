"""Prompt formats for guides and cores: DSPy's adapters, and a plain one small models follow.

DSPy's ChatAdapter frames every field in `[[ ## name ## ]]` markers under a long system
prompt. Measured on GSM8K with a 0.5B core it costs more than half the accuracy of a plain
chat prompt (docs/benchmarks.md), and a 135M guide rarely writes its JSON strategy field.
`PlainAdapter` is a `dspy.Adapter` with the prompt a person would write: the instruction,
the inputs under short headers, and for the reply either the strategy's own text layout
(`Strategy.render`, read back leniently by `Strategy.from_text`) or free working that ends
with `Answer: ...`, read by a lenient extractor. Guide, core alone and guided core all use
the same adapter, so comparisons stay fair.
"""

from __future__ import annotations

import re
import warnings
from typing import Any

import dspy
from dspy.utils.exceptions import AdapterParseError

from gcop.repair import field_header
from gcop.strategy import Strategy, StrategyParseError

ADAPTERS = ("plain", "chat", "json", "xml")
_WARNED: set[tuple[str, ...]] = set()
"""(signature, missing fields...) already warned about by `PlainAdapter.format_demos`."""
DEFAULT_ADAPTER = "plain"


def get_adapter(name: str) -> dspy.Adapter:
    """The adapter called `name` (one of :data:`ADAPTERS`)."""
    if name == "plain":
        return PlainAdapter()
    if name == "chat":
        # No JSON-adapter fallback: a malformed output is a scored outcome, not a second call.
        return dspy.ChatAdapter(use_json_adapter_fallback=False)
    if name == "json":
        return dspy.JSONAdapter()
    if name == "xml":
        return dspy.XMLAdapter()
    raise ValueError(f"unknown adapter {name!r}; use one of {', '.join(ADAPTERS)}")


def strategy_output(signature: type[dspy.Signature]) -> tuple[str, type[Strategy]] | None:
    """(name, type) when the signature's only output is a strategy (a guide's signature)."""
    outputs = signature.output_fields
    if len(outputs) != 1:
        return None
    name, field = next(iter(outputs.items()))
    annotation = field.annotation
    if isinstance(annotation, type) and issubclass(annotation, Strategy):
        return name, annotation
    return None


def layout_hint(strategy_type: type[Strategy], *, json: bool = False) -> str:
    """How to write the reply, shown once in the system message (as JSON when the reply is
    decoded under the type's JSON schema)."""
    fields = strategy_type.model_fields
    if json:  # described in words: a small model copies any example it is shown
        parts = [f'"{n}" ({"a list of strings: " if "list" in str(f.annotation) else ""}'
                 f"{f.description or n})" for n, f in fields.items()]  # fmt: skip
        return "Reply with JSON only: an object with " + ", ".join(parts) + "."
    if len(fields) == 1:
        return "Reply with the plan only: numbered lines (1. ..., 2. ...), one step per line."
    lines = []
    for name, field in fields.items():
        desc = field.description or name
        header = field_header(name)
        if "list" in str(field.annotation):
            lines += [f"{header}:", f"1. <{desc}>", "2. ..."]
        else:
            lines.append(f"{header}: <{desc}>")
    return "Reply in exactly this layout, nothing else:\n" + "\n".join(lines)


class PlainAdapter(dspy.Adapter):
    """A plain chat prompt and a lenient reader (see the module docstring). With
    `json_strategies=True` a guide is asked for the strategy's JSON instead of its text
    layout (for decoding under the type's JSON schema, `Strategy.response_format`)."""

    def __init__(self, *, json_strategies: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.json_strategies = json_strategies

    def format_field_description(self, signature: type[dspy.Signature]) -> str:
        return ""

    def format_field_structure(self, signature: type[dspy.Signature]) -> str:
        strategy = strategy_output(signature)
        if strategy:
            return layout_hint(strategy[1], json=self.json_strategies)
        *working, final = signature.output_fields.items()
        if not working:
            return f"Reply with {final[1].json_schema_extra.get('desc', final[0])}."
        return (
            "Work it out step by step, then end with a line "
            f"'{field_header(final[0])}: <{final[1].json_schema_extra.get('desc', final[0])}>'."
        )

    def format_task_description(self, signature: type[dspy.Signature]) -> str:
        # docstrings wrap at the source's line length: keep paragraphs, not line breaks
        return re.sub(r"(?<!\n)\n(?!\n)", " ", signature.instructions.strip())

    def format_system_message(self, signature: type[dspy.Signature]) -> str:
        return (
            f"{self.format_task_description(signature)}\n{self.format_field_structure(signature)}"
        )

    def format_user_message_content(
        self,
        signature: type[dspy.Signature],
        inputs: dict[str, Any],
        prefix: str = "",
        suffix: str = "",
        main_request: bool = False,
    ) -> str:
        present = [name for name in signature.input_fields if inputs.get(name) not in (None, "")]
        parts = [prefix]
        for name in present:
            value = inputs[name]
            text = value.render() if isinstance(value, Strategy) else str(value)
            parts.append(text if len(present) == 1 else f"{field_header(name)}:\n{text}")
        parts.append(suffix)
        return "\n\n".join(p for p in parts if p).strip()

    def format_assistant_message_content(
        self,
        signature: type[dspy.Signature],
        outputs: dict[str, Any],
        missing_field_message: str | None = None,
    ) -> str:
        strategy = strategy_output(signature)
        if strategy:
            value = outputs.get(strategy[0])
            if isinstance(value, dict):
                value = strategy[1].model_validate(value)
            return value.render() if isinstance(value, Strategy) else str(value or "")
        *working, final = signature.output_fields
        if not working:
            return str(outputs.get(final) or "")
        # A working field read by `parse` is the whole reply, its answer line included
        body = [without_final_line(str(outputs.get(name) or ""), final) for name in working]
        return "\n".join([*filter(None, body), f"{field_header(final)}: {outputs.get(final, '')}"])

    def format_demos(
        self, signature: type[dspy.Signature], demos: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """DSPy's demo turns, less the demos that lack some output field. DSPy shows such a
        demo with the field "Not supplied"; in a plain prompt it is a reply without its
        working (`Answer: 10`), and a small core copies that: after BootstrapFewShot's
        labelled demos (question and answer only) the 0.5B core answered 149 of 150
        MATH-500 problems with a bare `Answer:` line (docs/experiments.md). Demos with every
        output are kept; the warning is given once per signature and missing field."""
        outputs = list(signature.output_fields)
        given = [[_given(demo, name) for name in outputs] for demo in demos]
        partial = [demo for demo, has in zip(demos, given, strict=True) if any(has) != all(has)]
        missing = sorted({name for demo in partial for name in outputs if not _given(demo, name)})
        if partial and (signature.__name__, *missing) not in _WARNED:
            # once per process: Python's own once-only registry is reset whenever a library
            # changes the warning filters, and a grid formats these demos for every problem
            _WARNED.add((signature.__name__, *missing))
            warnings.warn(
                f"PlainAdapter: {len(partial)} demo(s) without {', '.join(missing)} left out of "
                f"the prompt of {signature.__name__}: a small model copies its demos, and a "
                "reply without a field teaches it to leave that out. Give demos every output "
                "field (e.g. Task.core_demo).",
                stacklevel=2,
            )
        kept = [demo for demo, has in zip(demos, given, strict=True) if any(has) == all(has)]
        return super().format_demos(signature, kept)  # (DSPy drops those with no output)

    def parse(self, signature: type[dspy.Signature], completion: str) -> dict[str, Any]:
        strategy = strategy_output(signature)
        if strategy:
            name, strategy_type = strategy
            try:
                return {name: strategy_type.from_text(completion)}
            except StrategyParseError as error:
                raise AdapterParseError(
                    adapter_name="PlainAdapter", signature=signature, lm_response=completion,
                    message=str(error),
                ) from error  # fmt: skip
        *working, final = signature.output_fields
        text = completion.strip()
        # Working fields keep the whole reply, answer line included: a metric may fall back
        # to its last number when the answer line does not parse.
        if not working:
            return {final: text}
        values: dict[str, Any] = dict.fromkeys(working, text)
        values[final] = extract_final(text, final)
        return values


def _given(demo: dict[str, Any], name: str) -> bool:
    return demo.get(name) not in (None, "")


def _final_line(name: str) -> str:
    """A line that gives the final field: `Answer: 42`, `**Final answer:** 42`."""
    return rf"^[\W_]*(?:final\s+)?{re.escape(field_header(name))}[\W_]*\s*[:=]\s*(.+?)\s*$"


def without_final_line(text: str, name: str) -> str:
    """`text` without a trailing line that gives the final field (a demo writes it once)."""
    lines = text.rstrip().splitlines()
    if lines and re.match(_final_line(name), lines[-1], flags=re.I):
        lines.pop()
    return "\n".join(lines).rstrip()


def extract_final(text: str, name: str) -> str | None:
    """The value of the final output field in free text: the last `Name: value` line,
    else the last `\\boxed{...}`, `#### value` or `the name is value`; None when absent."""
    patterns = [
        rf"(?im){_final_line(name)}",
        r"\\boxed\{((?:[^{}]|\{[^{}]*\})*)\}",
        r"####\s*(.+?)\s*$",
        rf"(?i)\bthe (?:final )?{re.escape(name)} is[:\s]+(.+?)(?:\.\s|\.?$)",
    ]
    for pattern in patterns:
        matches = re.findall(pattern, text, flags=re.M)
        if matches:
            return matches[-1].strip().strip("*").strip()
    return None
