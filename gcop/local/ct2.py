"""The CTranslate2 engine: a converted checkpoint decoded in int8, batched from many threads.

CTranslate2 (`pip install 'exectune[ct2]'`) runs the same transformers checkpoint 3-6x
faster on a CPU than the torch loop (docs/benchmarks.md). A checkpoint folder is converted
once into `$GCOP_HOME/models/ct2/<name>-<key>-<quantization>/` (written aside, then
renamed, like the GGUF conversion); a LoRA adapter is merged into the base first, and that
conversion is cached by the adapter's content hash.

How requests map onto `Generator.generate_batch`, which takes one set of sampling
options per call: a worker thread gathers requests while they keep arriving less than
`batch_window_s` apart (`gather_batch`), then
- greedy requests are decoded in one call; identical greedy prompts are decoded once;
- sampled requests with the same temperature and top-p share a call; identical prompts
  (the `n` samples of one request, or concurrent requests for the same prompt) become one
  row with `num_hypotheses=k`, so their prompt is prefilled once and its KV cache is
  copied to the `k` samples;
- per-row token budgets and stop strings are applied by the step callback, which ends a
  row as soon as it is done;
- the prompts of one call that begin with the same tokens (a few-shot prompt's system
  message and demos) pass those tokens once, as CTranslate2's `static_prompt`: it is read
  for one row and its state copied to the others, instead of being read once per row
  (`SHARED_PREFIX_MIN_TOKENS`);
- a sampled request with a `seed` is decoded on its own, on a fresh replica whose random
  generator is seeded with it: CTranslate2 draws samples from one thread-local generator
  per worker thread, seeded when the thread first samples, so a fresh replica is the only
  way to give one request a reproducible stream. It costs a model load per seeded call
  (see docs/benchmarks.md); unseeded calls never pay it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import shutil
import threading
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gcop.errors import GcopError
from gcop.local.engine import GenerationRequest, GenerationResult, WorkerThread, gather_batch
from gcop.local.registry import models_dir

log = logging.getLogger(__name__)

_SEED_LOCK = threading.Lock()
"""`ctranslate2.set_random_seed` is process-wide: one seeded replica starts at a time."""


class Ct2ConversionError(GcopError, ValueError):
    """CTranslate2 cannot convert this checkpoint (an architecture it does not know)."""


def compute_type() -> str:
    """int8 on CPU by default; `GCOP_CT2_COMPUTE_TYPE` picks another (int16, float32...)."""
    return os.environ.get("GCOP_CT2_COMPUTE_TYPE", "int8")


def default_threads() -> int:
    """`GCOP_CT2_THREADS`, else all cores but one (left to tokenizing, the step callback
    and the calling program). On the 2-core machine of docs/benchmarks.md one and two
    threads were within run-to-run noise of each other, one slightly ahead under load."""
    return int(os.environ.get("GCOP_CT2_THREADS", max(1, (os.cpu_count() or 2) - 1)))


def device() -> str:
    import ctranslate2

    return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"


def converted(source: Path | str, adapter: str | None = None) -> Path:
    """The CTranslate2 folder for checkpoint `source` (+ merged `adapter`), converted once."""
    quantization = compute_type()
    target = models_dir() / "ct2" / f"{_cache_key(source, adapter)}-{quantization}"
    if (target / "model.bin").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
    merged = target.with_name(f".{target.name}.merged-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        checkpoint = _merge_adapter(source, adapter, merged) if adapter else source
        log.info("converting %s to CTranslate2 at %s (once)", checkpoint, target)
        _convert(checkpoint, partial, quantization)
        try:
            os.replace(partial, target)
        except OSError:  # another process finished the same conversion first
            if not (target / "model.bin").exists():
                raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
        shutil.rmtree(merged, ignore_errors=True)
    return target


def _cache_key(source: Path | str, adapter: str | None) -> str:
    """Name and a short hash of where the weights are (folder path, sizes and mtimes, so a
    rewritten checkpoint is converted again) plus the adapter's content hash."""
    path = Path(source)
    digest = hashlib.sha256(str(path.resolve() if path.is_dir() else source).encode())
    if path.is_dir():
        for item in sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")):
            stat = item.stat()
            digest.update(f"{item.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    key = f"{path.name or str(source).replace('/', '--')}-{digest.hexdigest()[:10]}"
    if adapter:
        key += f"-lora-{_content_hash(Path(adapter))[:10]}"
    return key


def _content_hash(folder: Path) -> str:
    digest = hashlib.sha256()
    for item in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(item.relative_to(folder)).encode())
        digest.update(item.read_bytes())
    return digest.hexdigest()


def _merge_adapter(source: Path | str, adapter: str, folder: Path) -> Path:
    """Save base + LoRA adapter, merged, as a plain checkpoint that CTranslate2 converts."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(source)
    model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(source).save_pretrained(folder)
    return folder


def _convert(checkpoint: Path | str, output: Path, quantization: str) -> None:
    import json

    from ctranslate2.converters import TransformersConverter
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    try:
        TransformersConverter(str(checkpoint), low_cpu_mem_usage=True).convert(
            str(output), quantization=quantization, force=True
        )
    except (ValueError, NotImplementedError) as error:
        raise Ct2ConversionError(
            f"CTranslate2 cannot convert {checkpoint} ({error}); use ?engine=torch"
        ) from None
    # A tokenizer without a BOS token (Qwen2.5, our test models) leaves `bos_token: null`,
    # which CTranslate2 refuses to load; prompts here carry their own start tokens.
    config_path = output / "config.json"
    config = json.loads(config_path.read_text())
    if config.get("bos_token") is None:
        config["bos_token"] = config.get("eos_token")
        config_path.write_text(json.dumps(config, indent=2))


@dataclass
class _Job:
    request: GenerationRequest
    n: int
    futures: list[Future] = field(default_factory=list)


@dataclass
class _Row:
    """One prompt in a `generate_batch` call and the jobs that asked for its samples."""

    request: GenerationRequest
    jobs: list[_Job] = field(default_factory=list)

    @property
    def samples(self) -> int:
        return sum(job.n for job in self.jobs)


PROMPT_LENGTH_SPREAD = 32
"""Most prompt tokens one `generate_batch` call may have between its shortest and longest
prompt. CTranslate2 reads the prompts' common length in one pass and the rest one token per
step, at the cost of a decode step of the whole batch: on Qwen2.5-Coder-1.5B (int8, 2 CPU
threads) 16 prompts of 150-350 tokens took 59 s in one call and 39 s sorted into calls of
<= 32 tokens' spread (an equal-length batch of the same size: 27 s). Smaller calls cost
little on a CPU, where decoding is compute-bound already at a few rows."""


SHARED_PREFIX_MIN_TOKENS = 64
"""Fewest leading tokens the prompts of one `generate_batch` call must share for them to be
passed once as CTranslate2's `static_prompt` (read for one row, its state copied to the
rest). A few-shot prompt shares its instruction and demos, hundreds of tokens; the
threshold itself is not measured (a zero-shot prompt's shared system message, a few dozen
tokens, saves little either way). Measured on Qwen2.5-Coder-0.5B int8, 2 threads, 32
problems with 3 worked demos, greedy (benchmarks/ct2_shared_prefix.py): GSM8K 199 s per
row vs 143 s shared (1.39x), MATH-500 with 512-token replies 661 s vs 569 s (1.16x), the
same accuracy."""


def shared_prefix_length(prompts: list[list[int]]) -> int:
    """How many leading tokens all `prompts` share, short of the shortest one's last token
    (every row keeps at least one token of its own to start decoding from)."""
    common = os.path.commonprefix(prompts)  # element-wise on any sequences, token ids too
    return max(0, min(len(common), min(map(len, prompts)) - 1))


def length_buckets(rows: list[_Row], max_rows: int, spread: int = PROMPT_LENGTH_SPREAD):
    """`rows` sorted by prompt length and cut into calls of at most `max_rows` rows whose
    prompt lengths differ by at most `spread` tokens."""
    bucket: list[_Row] = []
    for row in sorted(rows, key=lambda r: len(r.request.prompt_ids)):
        length = len(row.request.prompt_ids)
        if bucket and (
            len(bucket) == max_rows or length - len(bucket[0].request.prompt_ids) > spread
        ):
            yield bucket
            bucket = []
        bucket.append(row)
    if bucket:
        yield bucket


class Ct2Generator(WorkerThread):
    """Decodes :class:`GenerationRequest` s with a CTranslate2 model, from many threads.

    Same contract as :class:`gcop.local.engine.BatchedGenerator`: `submit` / `submit_n`
    from any thread, `generate` in the calling thread, `batches_run` counts decode calls.
    """

    def __init__(
        self,
        folder: Path,
        eos_token_ids: list[int],
        tokens_of: Callable[[list[int]], list[str]],
        decode: Callable[[list[int]], str] | None = None,
        max_batch_size: int = 32,
        batch_window_s: float = 0.02,
        intra_threads: int | None = None,
        share_prefix: bool = True,
    ) -> None:
        import ctranslate2

        self.folder = folder
        self.eos_token_ids = sorted(set(eos_token_ids))
        self.tokens_of = tokens_of
        self.decode = decode
        self.max_batch_size = max_batch_size
        self.batch_window_s = batch_window_s
        self.intra_threads = intra_threads or default_threads()
        self.share_prefix = share_prefix
        self.model = self._replica(ctranslate2)
        self.batches_run = 0
        self.rows_decoded = 0  # prompts prefilled: the k samples of one prompt count once
        self.prefix_tokens_shared = 0  # prompt tokens read once for a call, not once per row
        self._queue: queue.Queue[_Job] = queue.Queue()
        self._worker: threading.Thread | None = None
        self._lock = threading.Lock()

    def _replica(self, ctranslate2) -> Any:
        return ctranslate2.Generator(
            str(self.folder), device=device(), compute_type=compute_type(),
            inter_threads=1, intra_threads=self.intra_threads,
        )  # fmt: skip

    # -- public API ---------------------------------------------------------------------
    def submit(self, request: GenerationRequest) -> Future:
        return self.submit_n(request, 1)[0]

    def submit_n(self, request: GenerationRequest, n: int) -> list[Future]:
        """`n` samples of one request (one prefill for all of them)."""
        job = _Job(request, n, [Future() for _ in range(n)])
        self._queue.put(job)
        self._ensure_worker()
        return job.futures

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        """Decode `requests` in the calling thread (grouped as the worker would)."""
        jobs = [_Job(r, 1, [Future()]) for r in requests]
        self._run(jobs)
        return [job.futures[0].result() for job in jobs]

    # -- worker -------------------------------------------------------------------------
    def _serve(self) -> None:
        while True:
            batch = gather_batch(self._queue, self.batch_window_s, self.max_batch_size,
                                 rows=lambda job: job.n)  # fmt: skip
            self._run(batch)

    def _run(self, jobs: list[_Job]) -> None:
        """Decode `jobs`, delivering each result (or the failure) to its future."""
        calls: dict[tuple, list[_Job]] = defaultdict(list)
        for job in jobs:
            r = job.request
            if r.temperature > 0 and r.seed is not None:
                calls[("seeded", id(job))].append(job)
            elif r.temperature <= 0:
                calls[("greedy",)].append(job)
            else:
                calls[("sampled", r.temperature, r.top_p)].append(job)
        for key, members in calls.items():
            try:
                self._decode_jobs(members, seeded=key[0] == "seeded")
            except BaseException as error:  # deliver the failure to every waiting caller
                for job in members:
                    for future in job.futures:
                        if not future.done():
                            future.set_exception(error)

    def _decode_jobs(self, jobs: list[_Job], seeded: bool) -> None:
        rows: dict[tuple, _Row] = {}
        for job in jobs:  # identical prompts and limits share one row
            r = job.request
            key = (tuple(r.prompt_ids), r.max_new_tokens, r.stop)
            rows.setdefault(key, _Row(r)).jobs.append(job)
        greedy = jobs[0].request.temperature <= 0
        by_samples: dict[int, list[_Row]] = defaultdict(list)
        for row in rows.values():  # num_hypotheses is one value per call
            by_samples[1 if greedy else row.samples].append(row)
        for k, group in by_samples.items():
            for chunk in length_buckets(group, self.max_batch_size):
                if seeded:
                    with _SEED_LOCK:
                        import ctranslate2

                        ctranslate2.set_random_seed(chunk[0].request.seed % 2**32)
                        replica = self._replica(ctranslate2)
                        samples = self._decode(replica, chunk, k)
                        del replica
                else:
                    samples = self._decode(self.model, chunk, k)
                for row, results in zip(chunk, samples, strict=True):
                    queue_ = iter(results) if not greedy else None
                    for job in row.jobs:
                        for future in job.futures:
                            future.set_result(results[0] if greedy else next(queue_))

    def _decode(self, model, rows: list[_Row], k: int) -> list[list[GenerationResult]]:
        """One `generate_batch` call: `k` samples of each row's prompt."""
        self.batches_run += 1
        self.rows_decoded += len(rows)
        first = rows[0].request
        produced: dict[tuple[int, int], list[int]] = defaultdict(list)

        def on_token(step) -> bool:
            """Ends a row at its own budget, or (one sample per row) at a stop string."""
            if step.token_id in self.eos_token_ids:
                return False
            request = rows[step.batch_id].request
            tokens = produced[step.batch_id, step.hypothesis_id]
            tokens.append(step.token_id)
            if len(tokens) >= request.max_new_tokens:
                return True
            return k == 1 and self._stop_at(tokens, request.stop) is not None

        prompts = [row.request.prompt_ids for row in rows]
        shared = shared_prefix_length(prompts) if self.share_prefix and len(rows) > 1 else 0
        if shared < SHARED_PREFIX_MIN_TOKENS:
            shared = 0
        self.prefix_tokens_shared += shared * (len(rows) - 1)
        prefix = {}
        if shared:  # not cached: ct2's prefix cache is a std::map that never evicts, and the
            # next call's shared prefix is seldom this one's (it spans a whole bucket's rows)
            prefix = {"static_prompt": self.tokens_of(prompts[0][:shared]),
                      "cache_static_prompt": False}  # fmt: skip
        results = model.generate_batch(
            [self.tokens_of(ids[shared:]) for ids in prompts],
            **prefix,
            max_length=max(row.request.max_new_tokens for row in rows),
            include_prompt_in_result=False,
            end_token=self.eos_token_ids,
            num_hypotheses=k,
            sampling_topk=1 if first.temperature <= 0 else 0,
            sampling_topp=first.top_p if first.temperature > 0 else 1.0,
            sampling_temperature=first.temperature if first.temperature > 0 else 1.0,
            callback=on_token,
        )
        out = []
        for row, result in zip(rows, results, strict=True):
            request = row.request
            samples = []
            for ids in result.sequences_ids:
                ids = list(ids[: request.max_new_tokens])
                cut = self._stop_at(ids, request.stop)
                if cut is not None:
                    samples.append(GenerationResult(ids[:cut], "stop"))
                else:
                    full = len(ids) >= request.max_new_tokens
                    samples.append(GenerationResult(ids, "length" if full else "stop"))
            out.append(samples)
        return out

    def _stop_at(self, tokens: list[int], stops: tuple[str, ...]) -> int | None:
        """Length of the shortest prefix of `tokens` whose text holds a stop string."""
        if not stops or self.decode is None:
            return None
        longest = max(len(s) for s in stops)
        if not any(stop in self.decode(tokens[-(longest + 8) :]) for stop in stops):
            return None
        for end in range(1, len(tokens) + 1):
            tail = self.decode(tokens[max(0, end - longest - 8) : end])
            if any(stop in tail for stop in stops):
                return end
        return None  # pragma: no cover - the full tail held a stop
