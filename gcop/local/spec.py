"""The `local/` model string, parsed and formatted in one place.

    local/<model>[?adapter=<dir>][&engine=<torch|ct2|auto>]

`<model>` is a registered name, a checkpoint folder, a `.gguf` file or a hub id (see
:mod:`gcop.local.registry`); options come after the first `?`, in any order. Everyone
else holds a :class:`LocalModelSpec` and never reads the string's inside.

Option values are percent-encoded by :meth:`LocalModelSpec.format` only where they hold
characters that would break the string (`&`, `=`, `?`, `%`, spaces), so ordinary paths
stay readable and strings written by older versions still parse.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal
from urllib.parse import quote, unquote

from gcop.errors import ModelStringError

PREFIX = "local/"
ENGINES = ("torch", "ct2")
"""`torch`: the in-process transformers loop (serves LoRA adapters live); `ct2`:
CTranslate2, int8 on CPU (adapters merged and converted once). `auto` picks one, see
:func:`gcop.local.engines.choose_engine`."""
OPTIONS = ("adapter", "engine")

Engine = Literal["torch", "ct2"]

_SAFE = "/:@~._-+,"  # characters left as they are in option values (paths stay readable)


@dataclass(frozen=True)
class LocalModelSpec:
    """A parsed `local/` model string: the model, an optional LoRA adapter, an engine."""

    model: str
    adapter: str | None = None
    engine: Engine | None = None
    """None: chosen automatically when the model is loaded."""

    def __post_init__(self) -> None:
        if not self.model or self.model.startswith("?"):
            raise ModelStringError("a local model string needs a model: local/<name-or-path>")
        if "?" in self.model:
            raise ModelStringError(
                f"the local model {self.model!r} contains '?', which starts the options; "
                "rename the file or folder"
            )
        if self.engine is not None and self.engine not in ENGINES:
            raise ModelStringError(
                f"unknown engine {self.engine!r} in a local model string; use one of "
                f"{', '.join(ENGINES)} or auto"
            )
        if self.adapter is not None and not self.adapter:
            raise ModelStringError("empty adapter= in a local model string; give a folder")

    @staticmethod
    def is_local(model: str) -> bool:
        """Whether a LiteLLM model string names a `local/` model."""
        return model.startswith(PREFIX)

    @classmethod
    def parse(cls, model: str) -> LocalModelSpec:
        """Parse `local/<model>?adapter=<dir>&engine=<name>` (the `local/` prefix is
        optional: LiteLLM hands the provider the string without it)."""
        text = model.removeprefix(PREFIX)
        base, _, query = text.partition("?")
        options: dict[str, str] = {}
        for part in query.split("&") if query else []:
            key, equals, value = part.partition("=")
            if key not in OPTIONS:
                raise ModelStringError(
                    f"unknown option {key!r} in local model {model!r}; known options: "
                    f"{', '.join(f'{o}=' for o in OPTIONS)} (e.g. local/<name>?engine=ct2)"
                )
            if not equals or not value:
                raise ModelStringError(f"option {key!r} in local model {model!r} has no value")
            if key in options:
                raise ModelStringError(f"option {key!r} appears twice in local model {model!r}")
            options[key] = unquote(value)
        engine = options.get("engine")
        return cls(
            model=base,
            adapter=options.get("adapter"),
            engine=None if engine == "auto" else engine,  # type: ignore[arg-type]
        )

    def format(self) -> str:
        """The LiteLLM model string, `local/...`; `parse(spec.format()) == spec`."""
        options = []
        if self.adapter is not None:
            options.append(f"adapter={quote(self.adapter, safe=_SAFE)}")
        if self.engine is not None:
            options.append(f"engine={self.engine}")
        return PREFIX + self.model + ("?" + "&".join(options) if options else "")

    def __str__(self) -> str:
        return self.format()

    def with_adapter(self, adapter: str | Path | None) -> LocalModelSpec:
        """This model with `adapter` (an absolute folder path), or with none."""
        return replace(self, adapter=None if adapter is None else str(Path(adapter).resolve()))

    def with_engine(self, engine: Engine | None) -> LocalModelSpec:
        return replace(self, engine=engine)

    @property
    def base(self) -> LocalModelSpec:
        """The model alone: no adapter, no engine choice."""
        return LocalModelSpec(self.model)


def adapter_spec(base: str, adapter: str | Path) -> str:
    """The `local/` model string for `base` with a LoRA adapter."""
    return LocalModelSpec.parse(base).with_adapter(adapter).format()
