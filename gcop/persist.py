"""Saving and loading a GCoP program: model strings, settings, the guide's few-shot demos
(ExecTune's AS stage is demos and nothing else) and the guide's adapter.

A LoRA adapter referenced by the guide's `local/...?adapter=<dir>` string is copied into
the saved folder, so the folder is self-contained; the base model is named, not copied.
"""

from __future__ import annotations

import importlib
import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gcop.atomic import atomic_dir, write_json
from gcop.errors import GcopError

if TYPE_CHECKING:
    from gcop.program import GCoP

ADAPTER_DIR = "guide_adapter"


SECRET_PARAMS = frozenset(
    {"api_key", "azure_ad_token", "azure_ad_token_provider", "aws_access_key_id",
     "aws_secret_access_key", "aws_session_token", "vertex_credentials", "headers",
     "extra_headers"}
)  # fmt: skip
"""Never written to disk: credentials come from the environment again at load time."""


def _lm_settings(lm) -> dict[str, Any]:
    everything = lm.settings() if hasattr(lm, "settings") else lm.kwargs  # GcopLM: client too
    settings = {k: v for k, v in everything.items() if k not in SECRET_PARAMS and v is not None}
    return {"model": lm.model, **json.loads(json.dumps(settings, default=str))}


def save_program(program: GCoP, directory: Path) -> Path:
    from gcop.local.spec import LocalModelSpec

    directory.mkdir(parents=True, exist_ok=True)
    guide = _lm_settings(program.guide.lm)
    if LocalModelSpec.is_local(guide["model"]):
        spec = LocalModelSpec.parse(guide["model"])
        if adapter := spec.adapter:
            with atomic_dir(directory / ADAPTER_DIR) as partial:
                shutil.copytree(adapter, partial, dirs_exist_ok=True)
            guide["model"], guide["adapter"] = spec.with_adapter(None).format(), ADAPTER_DIR
    strategy = program.guide.strategy_type
    state = {
        "strategy_type": f"{strategy.__module__}:{strategy.__qualname__}",
        "guide": guide,
        "core": _lm_settings(program.core.lm),
        "on_invalid": program.on_invalid,
        "hide_computed_values": program.hide_computed_values,
        "prompt_formats": {"guide": program.guide.adapter_name, "core": program.core.adapter_name},
        "guide_demos": [_demo_state(demo) for demo in program.guide.predict.demos],
    }
    write_json(directory / "program.json", state)
    return directory


def load_program(directory: Path) -> GCoP:
    import dspy

    from gcop.lm import GcopLM
    from gcop.local.spec import LocalModelSpec
    from gcop.program import Core, GCoP, Guide

    path = directory / "program.json"
    if not path.exists():
        raise GcopError(f"no saved program in {directory} (program.json is missing)")
    state = json.loads(path.read_text())
    module, _, name = state["strategy_type"].partition(":")
    strategy_type = getattr(importlib.import_module(module), name)
    guide = dict(state["guide"])
    if adapter := guide.pop("adapter", None):
        spec = LocalModelSpec.parse(guide["model"]).with_adapter(directory / adapter)
        guide["model"] = spec.format()
    formats = state.get("prompt_formats", {"guide": "chat", "core": "chat"})  # older saves
    loaded_guide = Guide(strategy_type, GcopLM(**guide), adapter=formats["guide"])
    loaded_guide.predict.demos = [
        dspy.Example(**demo["inputs"], strategy=strategy_type.parse(demo["strategy"]))
        for demo in state.get("guide_demos", [])
    ]
    return GCoP(
        loaded_guide,
        Core(GcopLM(**state["core"]), adapter=formats["core"]),
        on_invalid=state["on_invalid"],
        hide_computed_values=state.get("hide_computed_values", False),
    )


def _demo_state(demo) -> dict[str, Any]:
    """A guide demo as JSON: its task inputs and its strategy's fields."""
    from gcop.program import STRATEGY_FIELD

    fields = dict(demo.items())
    strategy = fields.pop(STRATEGY_FIELD)
    return {"inputs": fields, "strategy": strategy.model_dump()}
