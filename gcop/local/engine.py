"""In-process batched text generation for Hugging Face causal LMs.

Why a hand-written decode loop instead of `model.generate`: requests that arrive together
are decoded as one batch, but each keeps its own temperature, top-p, token budget and seed
(a per-row `torch.Generator`), so a sample does not depend on which other requests shared
its batch; rows that finish are dropped from the batch (and from the KV cache) at once.
`generate` offers neither per-row seeds nor per-row budgets.
"""

from __future__ import annotations

import inspect
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from typing import Protocol

import torch


class RowConstraint(Protocol):
    """The per-row state of a constraint (e.g. a JSON schema) while one row decodes."""

    def mask(self, logits: torch.Tensor) -> None:
        """Set the logits of tokens that may not come next to -inf, in place (one row)."""

    def advance(self, token: int) -> None:
        """Take the sampled token."""

    @property
    def finished(self) -> bool:
        """True once the text is complete and only end-of-sequence may follow."""


class TokenConstraint(Protocol):
    """A constraint on a completion; `start()` gives each decoding row its own state."""

    def start(self) -> RowConstraint: ...


@dataclass
class GenerationRequest:
    """One completion to decode: a tokenized prompt and its sampling parameters."""

    prompt_ids: list[int]
    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    """Strings that end the completion (checked on the decoded tail as tokens arrive)."""
    constraint: TokenConstraint | None = None
    """Masks the tokens that may not come next (see :mod:`gcop.local.constrained`)."""


@dataclass
class GenerationResult:
    token_ids: list[int]
    finish_reason: str  # "stop" (end of sequence) or "length" (budget reached)


@dataclass
class _Pending:
    request: GenerationRequest
    future: Future = field(default_factory=Future)


def _select_rows(cache, rows: torch.Tensor) -> None:
    """Keep only `rows` of every layer of a DynamicCache (finished rows leave the batch)."""
    if hasattr(cache, "batch_select_indices"):
        cache.batch_select_indices(rows)
        return
    for layer in cache.layers:  # pragma: no cover - older/newer cache layouts
        layer.keys = layer.keys[rows]
        layer.values = layer.values[rows]


def gather_batch(
    source: queue.Queue,
    window_s: float,
    limit: int,
    rows=lambda item: 1,
    max_wait_s: float | None = None,
) -> list:
    """Block for one item, then keep taking items while they arrive less than `window_s`
    apart, up to `limit` rows (`rows(item)` counts an item's rows) or `max_wait_s` after
    the first (default 10 x `window_s`): how every engine's worker forms a batch.

    The window restarts at each arrival because concurrent callers do not arrive at once:
    32 threads each formatting a LiteLLM call reach the queue over ~100 ms, and a fixed
    window from the first one split them into two decode calls, the second waiting for the
    first (SmolLM2 on ct2: 2 calls for 32 requests; docs/benchmarks.md)."""
    batch = [source.get()]
    started = time.monotonic()
    cap = started + (10 * window_s if max_wait_s is None else max_wait_s)
    deadline = min(started + window_s, cap)
    while sum(rows(item) for item in batch) < limit:
        timeout = deadline - time.monotonic()
        try:  # past the deadline: only what is already queued
            batch.append(source.get(timeout=max(timeout, 0)))
        except queue.Empty:
            break
        if timeout > 0:
            deadline = min(time.monotonic() + window_s, cap)
    return batch


class WorkerThread:
    """The one daemon thread an engine decodes on (its `_serve` loop), started on first use
    and restarted if it died; shared by both engines' generators."""

    _lock: threading.Lock
    _worker: threading.Thread | None

    def _serve(self) -> None:
        raise NotImplementedError

    def _ensure_worker(self) -> None:
        with self._lock:
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._serve, daemon=True)
                self._worker.start()


class BatchedGenerator(WorkerThread):
    """Decodes batches of :class:`GenerationRequest` with one model, from many threads.

    `submit` may be called from any thread; a single worker thread gathers the requests
    that keep arriving less than `batch_window_s` apart (up to `max_batch_size`;
    `gather_batch`) and decodes them together.
    Requests may carry a token constraint; it masks its own row only.
    """

    supports_constraints = True
    """Engines that cannot mask logits per row say False; the provider then refuses
    `response_format` for them."""

    def __init__(
        self,
        model,
        eos_token_ids: list[int],
        pad_token_id: int,
        decode=None,
        max_batch_size: int = 32,
        batch_window_s: float = 0.02,
    ) -> None:
        self.model = model
        self.eos_token_ids = torch.tensor(sorted(set(eos_token_ids)))
        self.pad_token_id = pad_token_id
        self.decode = decode
        # transformers 5 names the KV cache argument `cache`; 4.x names it `past_key_values`.
        self._cache_kw = (
            "cache"
            if "cache" in inspect.signature(model.forward).parameters
            else ("past_key_values")
        )
        self.max_batch_size = max_batch_size
        self.batch_window_s = batch_window_s
        self.batches_run = 0
        self._queue: queue.Queue[_Pending] = queue.Queue()
        self._worker: threading.Thread | None = None
        self._lock = threading.Lock()

    # -- public API ---------------------------------------------------------------------
    def submit(self, request: GenerationRequest) -> Future:
        pending = _Pending(request)
        self._queue.put(pending)
        self._ensure_worker()
        return pending.future

    def submit_n(self, request: GenerationRequest, n: int) -> list[Future]:
        """`n` samples of one request: `n` rows of the same prompt, decoded in one batch
        (each pays its own prefill: this loop has no shared-prefix KV). Sample `i` of a
        seeded request uses seed `seed * 1_000_003 + i`."""
        seed = request.seed
        return [
            self.submit(replace(request, seed=None if seed is None else seed * 1_000_003 + i))
            for i in range(n)
        ]

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        """Decode `requests` as one batch in the calling thread."""
        results: list[GenerationResult] = []
        for start in range(0, len(requests), self.max_batch_size):
            results.extend(self._decode(requests[start : start + self.max_batch_size]))
        return results

    # -- worker -------------------------------------------------------------------------
    def _serve(self) -> None:
        while True:
            batch = gather_batch(self._queue, self.batch_window_s, self.max_batch_size)
            try:
                results = self._decode([p.request for p in batch])
            except BaseException as error:  # deliver the failure to every waiting caller
                for pending in batch:
                    pending.future.set_exception(error)
                continue
            for pending, result in zip(batch, results, strict=True):
                pending.future.set_result(result)

    def _hit_stop(self, tokens: list[int], stops: tuple[str, ...]) -> bool:
        if not stops or self.decode is None:
            return False
        longest = max(len(s) for s in stops)
        tail = self.decode(tokens[-(longest + 8) :])
        return any(stop in tail for stop in stops)

    # -- decoding -----------------------------------------------------------------------
    @torch.inference_mode()
    def _decode(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        self.batches_run += 1
        device = self.model.device
        width = max(len(r.prompt_ids) for r in requests)
        input_ids = torch.full((len(requests), width), self.pad_token_id, dtype=torch.long)
        attention = torch.zeros((len(requests), width), dtype=torch.long)
        for i, r in enumerate(requests):  # left padding: every row ends at the same column
            input_ids[i, width - len(r.prompt_ids) :] = torch.tensor(r.prompt_ids)
            attention[i, width - len(r.prompt_ids) :] = 1
        input_ids, attention = input_ids.to(device), attention.to(device)
        positions = (attention.cumsum(-1) - 1).clamp(min=0)
        generators = [_generator(r.seed) for r in requests]
        constraints = [r.constraint.start() if r.constraint else None for r in requests]

        out = self.model(
            input_ids=input_ids, attention_mask=attention, position_ids=positions, use_cache=True
        )
        cache = _cache_of(out)
        logits = out.logits[:, -1, :].float()
        active = list(range(len(requests)))  # original index of each row still decoding
        outputs: list[list[int]] = [[] for _ in requests]
        finish = ["length"] * len(requests)
        eos = self.eos_token_ids.to(device)
        next_position = positions[:, -1]

        while active:
            for row, i in enumerate(active):
                if constraints[i] is not None:
                    constraints[i].mask(logits[row])  # a view: masks this row in place
            tokens = torch.stack(
                [_sample(logits[row], requests[i], generators[i]) for row, i in enumerate(active)]
            )
            keep: list[int] = []
            for row, i in enumerate(active):
                token = int(tokens[row])
                if bool((eos == token).any()):
                    finish[i] = "stop"
                    continue
                outputs[i].append(token)
                if constraints[i] is not None:
                    constraints[i].advance(token)
                if constraints[i] is not None and constraints[i].finished:
                    finish[i] = "stop"  # complete: end-of-sequence is all it allows next
                elif self._hit_stop(outputs[i], requests[i].stop):
                    finish[i] = "stop"
                elif len(outputs[i]) < requests[i].max_new_tokens:
                    keep.append(row)
            if not keep:
                break
            if len(keep) < len(active):
                rows = torch.tensor(keep, device=device)
                _select_rows(cache, rows)
                tokens, attention, next_position = (
                    tokens[rows],
                    attention[rows],
                    next_position[rows],
                )
                active = [active[row] for row in keep]
            attention = torch.cat([attention, attention.new_ones((len(active), 1))], dim=-1)
            next_position = next_position + 1
            out = self.model(
                input_ids=tokens[:, None],
                attention_mask=attention,
                position_ids=next_position[:, None],
                use_cache=True,
                **{self._cache_kw: cache},
            )
            cache = _cache_of(out)
            logits = out.logits[:, -1, :].float()
        return [GenerationResult(o, f) for o, f in zip(outputs, finish, strict=True)]


def _cache_of(out):
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


def _generator(seed: int | None) -> torch.Generator:
    generator = torch.Generator()
    generator.manual_seed(seed if seed is not None else torch.seed())
    return generator


def _sample(logits: torch.Tensor, request: GenerationRequest, generator: torch.Generator):
    if request.temperature <= 0:
        return logits.argmax()
    probs = torch.softmax(logits.cpu() / request.temperature, dim=-1)
    if request.top_p < 1.0:
        sorted_probs, order = probs.sort(descending=True)
        outside = sorted_probs.cumsum(-1) - sorted_probs > request.top_p
        sorted_probs[outside] = 0.0
        probs = torch.zeros_like(probs).scatter(0, order, sorted_probs)
    return torch.multinomial(probs, 1, generator=generator)[0].to(logits.device)
