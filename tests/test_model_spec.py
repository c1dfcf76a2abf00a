"""The `local/` model string has one owner: LocalModelSpec parses and formats every form."""

from __future__ import annotations

from pathlib import Path

import pytest

from gcop.errors import ModelStringError
from gcop.local import LocalModelSpec, adapter_spec


@pytest.mark.parametrize(
    ("text", "model", "adapter", "engine"),
    [
        ("local/smollm2-135m-instruct", "smollm2-135m-instruct", None, None),
        ("local//models/my-checkpoint", "/models/my-checkpoint", None, None),
        ("local/./relative/folder", "./relative/folder", None, None),
        ("local//models/qwen.Q4_K_M.gguf", "/models/qwen.Q4_K_M.gguf", None, None),
        ("local/HuggingFaceTB/SmolLM2-135M-Instruct", "HuggingFaceTB/SmolLM2-135M-Instruct",
         None, None),
        ("local/qwen?adapter=/runs/a/sft/adapter", "qwen", "/runs/a/sft/adapter", None),
        ("local/qwen?engine=ct2", "qwen", None, "ct2"),
        ("local/qwen?engine=torch", "qwen", None, "torch"),
        ("local/Org/model?adapter=/a/b&engine=ct2", "Org/model", "/a/b", "ct2"),
        ("local//m.gguf?engine=torch&adapter=/a/b", "/m.gguf", "/a/b", "torch"),
        ("local/x?adapter=/runs/my%20run/adapter%26v2", "x", "/runs/my run/adapter&v2", None),
    ],
)  # fmt: skip
def test_every_form_parses_and_round_trips(text, model, adapter, engine) -> None:
    spec = LocalModelSpec.parse(text)
    assert (spec.model, spec.adapter, spec.engine) == (model, adapter, engine)
    assert LocalModelSpec.parse(spec.format()) == spec
    assert spec.format().startswith("local/")
    assert LocalModelSpec.parse(text.removeprefix("local/")) == spec  # LiteLLM strips it


def test_format_is_canonical_and_readable() -> None:
    spec = LocalModelSpec.parse("local/m?engine=ct2&adapter=/runs/a")
    assert spec.format() == "local/m?adapter=/runs/a&engine=ct2"  # one order, paths as-is
    assert LocalModelSpec.parse("local/m?engine=auto") == LocalModelSpec("m")  # auto = unset
    assert str(LocalModelSpec("m", engine="ct2")) == "local/m?engine=ct2"


def test_with_adapter_and_base_keep_the_engine(tmp_path: Path) -> None:
    spec = LocalModelSpec.parse("local/m?engine=ct2")
    tuned = spec.with_adapter(tmp_path / "adapter")
    assert tuned.adapter == str((tmp_path / "adapter").resolve()) and tuned.engine == "ct2"
    assert tuned.with_adapter(None) == spec and tuned.base == LocalModelSpec("m")
    assert adapter_spec("m", tmp_path) == f"local/m?adapter={tmp_path.resolve()}"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("local/", "needs a model"),
        ("local/?engine=ct2", "needs a model"),
        ("local/m?engine=vllm", "unknown engine 'vllm'"),
        ("local/m?adaptor=/a", "unknown option 'adaptor'.*adapter=, engine="),
        ("local/m?adapter=", "has no value"),
        ("local/m?adapter", "has no value"),
        ("local/m?engine=ct2&engine=torch", "appears twice"),
    ],
)
def test_bad_strings_are_rejected_with_the_fix(text: str, message: str) -> None:
    with pytest.raises(ModelStringError, match=message):
        LocalModelSpec.parse(text)


def test_is_local() -> None:
    assert LocalModelSpec.is_local("local/m")
    assert not LocalModelSpec.is_local("openai/gpt-4o-mini")
