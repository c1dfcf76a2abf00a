"""The one layer every model call goes through: a disk cache and a cost ledger.

Guide, core and teacher calls are keyed by model, messages and the sampling parameters
(and, for a `local/` model, the engine that decodes it: `gcop.lm.engine_key_params`),
plus a sample index when the call samples (temperature > 0 or n > 1), so that a rerun gets
the same samples and a new sample index gets a new one. A hit returns the stored response
*with* its stored usage and cost: the cost of a strategy does not depend on whether it was
cached. The ledger counts what was spent (misses) and what was saved (hits), per model.

Secrets never enter the cache: transport and credential parameters are not part of a key,
and only the response (never the request) is stored.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import diskcache

# Parameters that choose *where* and *how* a request travels, not *what* it computes.
TRANSPORT_PARAMS = frozenset(
    {
        "api_key", "api_base", "base_url", "api_version", "organization", "project",
        "headers", "extra_headers", "extra_query", "timeout", "num_retries", "max_retries",
        "metadata", "cache", "client", "azure_ad_token", "azure_ad_token_provider",
        "aws_access_key_id", "aws_secret_access_key", "aws_session_token",
        "vertex_credentials", "rollout_id", "custom_llm_provider", "stream", "stream_options",
    }
)  # fmt: skip


def default_home() -> Path:
    """Root of gcop's local state (`$GCOP_HOME`, default `~/.cache/gcop`)."""
    return Path(os.environ.get("GCOP_HOME", Path.home() / ".cache" / "gcop"))


@dataclass
class CallRecord:
    """One model call as seen by the caller: what it used and cost, and whether it was cached."""

    model: str
    prompt_tokens: int
    completion_tokens: int
    cost: float
    cached: bool
    truncated: bool = False
    """The reply was cut at `max_tokens` (`finish_reason == "length"`): a plan over budget,
    a core that ran out of room for its program."""


@dataclass
class ModelTotals:
    calls: int = 0
    cache_hits: int = 0
    failed_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_spent: float = 0.0
    cost_saved: float = 0.0
    tokens_spent: int = 0


@dataclass
class CostLedger:
    """Spent vs saved, per model. Thread-safe; one per process unless you make your own."""

    totals: dict[str, ModelTotals] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, call: CallRecord) -> None:
        with self._lock:
            t = self.totals.setdefault(call.model, ModelTotals())
            t.calls += 1
            t.prompt_tokens += call.prompt_tokens
            t.completion_tokens += call.completion_tokens
            if call.cached:
                t.cache_hits += 1
                t.cost_saved += call.cost
            else:
                t.cost_spent += call.cost
                t.tokens_spent += call.prompt_tokens + call.completion_tokens

    def record_failure(self, model: str) -> None:
        with self._lock:
            self.totals.setdefault(model, ModelTotals()).failed_calls += 1

    def model_calls(self, model: str | None = None) -> int:
        """Calls that reached a model (cache misses), for one model or all."""
        rows = [self.totals.get(model, ModelTotals())] if model else self.totals.values()
        return sum(t.calls - t.cache_hits for t in rows)

    def as_dict(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {model: asdict(t) for model, t in self.totals.items()}

    def reset(self) -> None:
        with self._lock:
            self.totals.clear()


_collectors: contextvars.ContextVar[tuple[list[CallRecord], ...]] = contextvars.ContextVar(
    "gcop_call_collectors", default=()
)


@contextmanager
def track_calls() -> Iterator[list[CallRecord]]:
    """Collect the calls made inside this block (in this thread/context), nested blocks too."""
    calls: list[CallRecord] = []
    token = _collectors.set((*_collectors.get(), calls))
    try:
        yield calls
    finally:
        _collectors.reset(token)


@dataclass(frozen=True)
class SpendLimit:
    """Stop new model calls once this process has spent `dollars` or `tokens` (misses only:
    cached calls are free), counting only `models` when given. Because every finished call
    is cached, a run stopped by the limit resumes where it stopped when run again."""

    dollars: float | None = None
    tokens: int | None = None
    models: tuple[str, ...] = ()

    def check(self, ledger: CostLedger) -> None:
        from gcop.errors import BudgetExceededError

        rows = [t for m, t in ledger.totals.items() if not self.models or m in self.models]
        spent = sum(t.cost_spent for t in rows)
        tokens = sum(t.tokens_spent for t in rows)
        if self.dollars is not None and spent >= self.dollars:
            raise BudgetExceededError(
                f"spending budget reached: ${spent:.4f} of ${self.dollars:.4f}; everything done "
                "so far is cached, so rerunning with a larger budget resumes from here"
            )
        if self.tokens is not None and tokens >= self.tokens:
            raise BudgetExceededError(
                f"token budget reached: {tokens} of {self.tokens} tokens; everything done so "
                "far is cached, so rerunning with a larger budget resumes from here"
            )


def call_key(model: str, messages: list[dict], params: dict[str, Any], sample: int | None) -> str:
    """Stable key of a call: model, messages, output-affecting parameters and sample index."""
    kept = {k: v for k, v in sorted(params.items()) if k not in TRANSPORT_PARAMS and v is not None}
    payload = {"model": model, "messages": messages, "params": kept, "sample": sample}
    blob = json.dumps(payload, sort_keys=True, default=repr, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


def sample_index(params: dict[str, Any], rollout_id: int | None) -> int | None:
    """A sampled call is identified by its rollout id (0 if none); a greedy one by nothing."""
    sampling = (params.get("temperature") or 0) > 0 or (params.get("n") or 1) > 1
    return (rollout_id or 0) if sampling else None


class CallCache:
    """Disk-backed (diskcache/SQLite: each write is one atomic transaction) store of calls."""

    def __init__(self, directory: str | Path | None = None, ledger: CostLedger | None = None):
        self.directory = Path(directory) if directory else default_home() / "calls"
        self.store = diskcache.Cache(str(self.directory))
        self.ledger = ledger or CostLedger()
        self.spend_limit: SpendLimit | None = None
        self._inflight: dict[str, tuple[threading.Lock, int]] = {}
        self._inflight_lock = threading.Lock()

    def call(
        self,
        model: str,
        messages: list[dict],
        params: dict[str, Any],
        *,
        rollout_id: int | None,
        compute: Callable[[], tuple[dict[str, Any], float]],
    ) -> tuple[dict[str, Any], CallRecord]:
        """Return `(response_dict, record)`, from the store or by running `compute`.

        `compute` makes the real call and returns the response as a plain dict plus its
        cost in dollars; an exception from it is counted as a failed call and is *not*
        cached, so the next run retries it.
        """
        key = call_key(model, messages, params, sample_index(params, rollout_id))
        with self._key_lock(key):  # identical concurrent calls: one runs, the rest hit
            stored = self.store.get(key)
            if stored is not None:
                record = _record(model, stored["response"], stored["cost"], cached=True)
            else:
                if self.spend_limit and (
                    not self.spend_limit.models or model in self.spend_limit.models
                ):
                    self.spend_limit.check(self.ledger)
                try:
                    response, cost = compute()
                except Exception:
                    self.ledger.record_failure(model)
                    raise
                stored = {"response": response, "cost": cost}
                self.store.set(key, stored)
                record = _record(model, response, cost, cached=False)
        self.ledger.record(record)
        for calls in _collectors.get():
            calls.append(record)
        return stored["response"], record

    @contextmanager
    def _key_lock(self, key: str) -> Iterator[None]:
        """A lock per key in flight (other keys proceed in parallel), dropped when unused."""
        with self._inflight_lock:
            lock, users = self._inflight.get(key, (threading.Lock(), 0))
            self._inflight[key] = (lock, users + 1)
        try:
            with lock:
                yield
        finally:
            with self._inflight_lock:
                lock, users = self._inflight[key]
                if users == 1:
                    del self._inflight[key]
                else:
                    self._inflight[key] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self.store)

    def clear(self) -> None:
        self.store.clear()


def _record(model: str, response: dict[str, Any], cost: float, cached: bool) -> CallRecord:
    usage = response.get("usage") or {}
    return CallRecord(
        model=model,
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
        cost=float(cost or 0.0),
        cached=cached,
        truncated=any(
            choice.get("finish_reason") == "length" for choice in response.get("choices") or []
        ),
    )


_default_cache: CallCache | None = None
_default_lock = threading.Lock()


def default_cache() -> CallCache:
    """The process-wide cache under `$GCOP_HOME/calls` (or `$GCOP_CACHE_DIR`)."""
    global _default_cache
    with _default_lock:
        if _default_cache is None:
            directory = os.environ.get("GCOP_CACHE_DIR")
            _default_cache = CallCache(directory)
        return _default_cache


def set_default_cache(cache: CallCache | None) -> None:
    """Point every LM that uses the default cache at `cache` (None: re-read the env)."""
    global _default_cache
    with _default_lock:
        _default_cache = cache
