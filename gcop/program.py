"""The guide-core program: `Guide`, `Core`, `GCoP` and the `CoreOnly` baseline.

All four are `dspy.Module`s whose prompts go through a DSPy adapter (`adapter="plain"` by
default, see :mod:`gcop.adapters`), so the text a guide sees at inference is exactly the
text :meth:`Guide.format_prompt` returns for training.
Every prediction carries the calls it made (tokens, cost, cache hits) per role.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dspy
from dspy.utils.exceptions import AdapterParseError
from pydantic import ValidationError

from gcop.adapters import DEFAULT_ADAPTER, PlainAdapter, get_adapter
from gcop.calls import CallRecord, track_calls
from gcop.checks import check_strategy_type
from gcop.errors import ConfigError
from gcop.lm import GcopLM
from gcop.strategy import Strategy, StrategyParseError, Validity, Verdict

STRATEGY_FIELD = "strategy"
COMPLETED_MARKER = "[[ ## completed ## ]]"
"""The ChatAdapter's end-of-output marker: decoding stops there instead of at max_tokens."""


def as_lm(lm: str | dspy.BaseLM, *, temperature: float, max_tokens: int) -> dspy.BaseLM:
    """A model string becomes a cached :class:`GcopLM`; an LM object is used as given."""
    if isinstance(lm, dspy.BaseLM):
        return lm
    return GcopLM(lm, temperature=temperature, max_tokens=max_tokens, stop=[COMPLETED_MARKER])


def guide_signature(strategy_type: type[Strategy]) -> type[dspy.Signature]:
    """Task inputs -> strategy: the strategy type, with the type's docstring as instruction."""
    task = strategy_type.task
    fields = {name: (task.input_fields[name].annotation, task.input_fields[name])
              for name in task.input_fields}  # fmt: skip
    fields[STRATEGY_FIELD] = (strategy_type, dspy.OutputField(desc="the strategy, as JSON"))
    instructions = (strategy_type.__doc__ or "").strip() or f"Write a {strategy_type.__name__}."
    return dspy.Signature(fields, instructions)


def guided_signature(task: type[dspy.Signature]) -> type[dspy.Signature]:
    """The task signature with the strategy as an extra input the core must follow."""
    field = dspy.InputField(desc="a plan written for this problem: follow it step by step")
    guided = task.insert(len(task.input_fields), STRATEGY_FIELD, field, str)
    return guided.with_instructions(
        f"{task.instructions.strip()}\nFollow the given strategy: carry out each step."
    )


def usage_summary(calls: list[CallRecord]) -> dict[str, Any]:
    return {
        "calls": len(calls),
        "cache_hits": sum(c.cached for c in calls),
        "prompt_tokens": sum(c.prompt_tokens for c in calls),
        "completion_tokens": sum(c.completion_tokens for c in calls),
        "truncated": sum(c.truncated for c in calls),
        "cost": sum(c.cost for c in calls),
    }


class Guide(dspy.Module):
    """Maps a task input to a typed strategy.

    Args:
        strategy_type: the `Strategy` subclass to write (it names the task signature).
        lm: a LiteLLM model string (e.g. `local/smollm2-135m-instruct`) or a dspy LM.
        adapter: the prompt format, one of `gcop.adapters.ADAPTERS` (default "plain").
        constrained: decode under the strategy type's JSON schema (`response_format`: API
            models natively, `local/` models through a logits processor), so the reply always
            parses; the prompt then asks for the JSON. Used for teachers in stage 1.
    """

    def __init__(
        self,
        strategy_type: type[Strategy],
        lm: str | dspy.BaseLM,
        *,
        temperature: float = 0.0,
        max_tokens: int = 256,
        adapter: str = DEFAULT_ADAPTER,
        constrained: bool = False,
    ) -> None:
        super().__init__()
        check_strategy_type(strategy_type)
        self.strategy_type = strategy_type
        self.adapter_name = adapter
        self.constrained = constrained
        if constrained and adapter not in ("plain", "json"):
            raise ConfigError(
                f"constrained decoding writes bare JSON, which the {adapter!r} adapter cannot "
                "read; use adapter='plain' or 'json'"
            )
        self.adapter = (
            PlainAdapter(json_strategies=True)
            if constrained and adapter == "plain"
            else get_adapter(adapter)
        )
        self.lm = as_lm(lm, temperature=temperature, max_tokens=max_tokens)
        self.predict = dspy.Predict(guide_signature(strategy_type))
        self.predict.lm = self.lm

    def format_prompt(self, **inputs: Any) -> list[dict[str, str]]:
        """The exact chat messages the guide's LM receives for `inputs`."""
        return self.adapter.format(self.predict.signature, self.predict.demos, inputs)

    def format_training_example(self, strategy: Strategy, **inputs: Any) -> dict[str, list]:
        """`{"messages": [...]}`: the guide's prompt for `inputs` and `strategy` as its reply,
        formatted by the same adapter as at inference (the SFT target)."""
        messages = self.format_prompt(**inputs)
        reply = self.adapter.format_assistant_message_content(
            self.predict.signature, {STRATEGY_FIELD: strategy}
        )
        return {"messages": [*messages, {"role": "assistant", "content": reply}]}

    def read(self, text: str) -> Strategy:
        """The strategy in a completion of this guide's prompt, read as inference reads it
        (exact, else repaired); raises `StrategyParseError` with the reason."""
        try:
            return self.adapter.parse(self.predict.signature, text)[STRATEGY_FIELD]
        except AdapterParseError as error:
            if self.adapter_name == "plain":
                raise StrategyParseError(_parse_reason(error)) from None
            return self.strategy_type.from_text(text)  # a near miss of the JSON field

    def forward(self, *, config: dict[str, Any] | None = None, **inputs: Any) -> dspy.Prediction:
        config = dict(config or {})
        if self.constrained:
            config["response_format"] = self.strategy_type.response_format()
        with track_calls() as calls, dspy.context(adapter=self.adapter):
            try:
                out = self.predict(**inputs, config=config)
                strategy, raw = out[STRATEGY_FIELD], None
            except AdapterParseError as error:
                strategy, raw = None, error.lm_response
                try:  # another adapter's field markers missing: read the text leniently
                    if self.adapter_name != "plain" and raw:
                        strategy = self.strategy_type.from_text(raw)
                except StrategyParseError:
                    pass
                reason = _parse_reason(error)
        validity = (
            strategy.check() if strategy is not None else Validity(Verdict.UNPARSEABLE, reason)
        )
        return dspy.Prediction(
            strategy=strategy, validity=validity, raw=raw, usage=usage_summary(calls)
        )


def _parse_reason(error: AdapterParseError) -> str:
    """Why the guide's text is not a strategy, in one line (never the whole response)."""
    cause = error.__cause__
    if isinstance(cause, StrategyParseError):
        return str(cause)[:300]
    if isinstance(cause, ValidationError):
        return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in cause.errors())
    first = str(error).splitlines()[0]
    if not first.startswith("Adapter "):  # DSPy put a specific message first
        return first[:300]
    if error.parsed_result is not None:
        return f"no [[ ## {STRATEGY_FIELD} ## ]] field in the output"
    return "the output has none of the expected [[ ## field ## ]] sections"


class Core(dspy.Module):
    """Maps task input (+ a strategy, when given one) to the task output.

    Args:
        lm: a LiteLLM model string or a dspy LM; the black box being guided.
        task: the task signature; `GCoP` binds it from the guide's strategy type.
        adapter: the prompt format, one of `gcop.adapters.ADAPTERS` (default "plain"); the
            same for the core alone and the guided core, so comparisons stay fair.
    """

    def __init__(
        self,
        lm: str | dspy.BaseLM,
        *,
        task: type[dspy.Signature] | None = None,
        temperature: float = 0.0,
        max_tokens: int = 512,
        adapter: str = DEFAULT_ADAPTER,
    ) -> None:
        super().__init__()
        self.lm = as_lm(lm, temperature=temperature, max_tokens=max_tokens)
        self.adapter_name = adapter
        self.adapter = get_adapter(adapter)
        self.task = task
        self.alone = self.guided = None
        if task is not None:
            self.bind(task)

    def bind(self, task: type[dspy.Signature]) -> Core:
        self.task = task
        self.alone = dspy.Predict(task)
        self.guided = dspy.Predict(guided_signature(task))
        self.alone.lm = self.guided.lm = self.lm
        return self

    def forward(self, *, strategy: str | None = None, **inputs: Any) -> dspy.Prediction:
        if self.task is None:
            raise TypeError("Core has no task signature: pass task=... or use it inside GCoP")
        with track_calls() as calls, dspy.context(adapter=self.adapter):
            try:
                if strategy is None:
                    out = self.alone(**inputs)
                else:
                    out = self.guided(**inputs, strategy=strategy)
                outputs, raw, error = dict(out.items()), None, None
            except AdapterParseError as parse_error:  # malformed output: scored, not raised
                outputs = dict.fromkeys(self.task.output_fields)
                raw, error = parse_error.lm_response, "unparseable core output"
        return dspy.Prediction(**outputs, raw=raw, parse_error=error, usage=usage_summary(calls))


class GCoP(dspy.Module):
    """Guide writes a strategy; core executes it.

    When the strategy is invalid the core runs alone (`on_invalid="core_alone"`, the
    default: a broken plan never costs accuracy) or not at all (`"skip"`); either way the
    prediction says the strategy was invalid and why.
    """

    def __init__(
        self,
        guide: Guide,
        core: Core,
        *,
        on_invalid: str = "core_alone",
        hide_computed_values: bool = False,
    ) -> None:
        """`hide_computed_values`: the core reads the strategy without the values the guide
        computed (`Strategy.without_computed_values`): what to compute, never a result, so
        never the answer. A guide as strong as its core computes as it plans; on GSM8K test
        (docs/benchmarks.md, issue 12, fourth session) hiding its values kept +9 of its +11
        points over the zero-shot core alone (neither beat the core shown the guide's demos)."""
        super().__init__()
        if on_invalid not in ("core_alone", "skip"):
            raise ValueError(f"on_invalid={on_invalid!r}: use 'core_alone' or 'skip'")
        self.guide = guide
        self.core = core
        if core.task is None:
            core.bind(guide.strategy_type.task)
        self.on_invalid = on_invalid
        self.hide_computed_values = hide_computed_values

    def with_guide(self, guide: Guide) -> GCoP:
        """A new program with `guide` and this program's core (this one is left as it was)."""
        return GCoP(guide, self.core, on_invalid=self.on_invalid,
                    hide_computed_values=self.hide_computed_values)  # fmt: skip

    def save(self, directory: str | Path) -> Path:
        """Write `program.json` (and copy the guide's LoRA adapter, if any) to `directory`."""
        from gcop.persist import save_program

        return save_program(self, Path(directory))

    @classmethod
    def load(cls, directory: str | Path) -> GCoP:
        """The program `save` wrote; the adapter is read from inside `directory`."""
        from gcop.persist import load_program

        return load_program(Path(directory))

    def shown_to_core(self, strategy: Strategy, inputs: dict[str, Any]) -> Strategy:
        """The strategy as this program's core reads it: the one place that decides, for
        inference, stage-1 acceptance and the RL reward alike."""
        return strategy.without_computed_values(inputs) if self.hide_computed_values else strategy

    def execute(self, strategy: Strategy, example: dspy.Example) -> dspy.Prediction:
        """The core's call on `example` guided by `strategy`, shown as deployment shows it
        (`shown_to_core`): what stage-1 acceptance and the RL reward score."""
        inputs = dict(example.inputs())
        return self.core(**inputs, strategy=self.shown_to_core(strategy, inputs).render())

    def forward(self, *, guide_config: dict[str, Any] | None = None, **inputs: Any):
        plan = self.guide(**inputs, config=guide_config)
        shown = self.shown_to_core(plan.strategy, inputs) if plan.validity.ok else None
        text = shown.render() if shown is not None else None
        if text is None and self.on_invalid == "skip":
            empty = dict.fromkeys(self.core.task.output_fields)
            result = dspy.Prediction(**empty, raw=None, parse_error=None, usage=usage_summary([]))
        else:
            result = self.core(**inputs, strategy=text)
        return dspy.Prediction(
            **{k: v for k, v in result.items() if k != "usage"},
            strategy=shown if shown is not None else plan.strategy,
            strategy_text=text,
            validity=plan.validity,
            guide_raw=plan.raw,
            guide_usage=plan.usage,
            core_usage=result.usage,
        )


class CoreOnly(dspy.Module):
    """The baseline: the core alone on the task, with the same adapter and budget."""

    def __init__(self, core: Core, task: type[dspy.Signature] | None = None) -> None:
        super().__init__()
        self.core = core
        if task is not None:
            core.bind(task)

    def forward(self, **inputs: Any) -> dspy.Prediction:
        result = self.core(**inputs)
        return dspy.Prediction(
            **{k: v for k, v in result.items() if k != "usage"},
            guide_usage=usage_summary([]),
            core_usage=result.usage,
        )
