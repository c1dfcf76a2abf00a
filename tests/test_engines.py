"""Each engine through the real LiteLLM path, on a tiny model converted in the test:
seeds reproduce, stop strings and max_tokens hold, n>1 works, usage is reported, and a
missing optional engine names the extra to install."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import litellm
import pytest
import torch

import gcop  # noqa: F401  (registers local/)
from gcop.local import MODELS, LocalModelSpec, adapter_spec
from gcop.local.engine import GenerationRequest
from gcop.local.provider import prompt_ids

MESSAGES = [{"role": "user", "content": "What is 3 plus 4?"}]
ENGINES = ["torch", "ct2"]


def complete(model: str, **params):
    return litellm.completion(model=model, messages=MESSAGES, **params)


def texts(response) -> list[str]:
    return [choice.message.content for choice in response.choices]


@pytest.mark.parametrize("engine", ENGINES)
def test_stop_strings_and_max_tokens_hold(tiny_model: str, engine: str) -> None:
    model = f"local/{tiny_model}?engine={engine}"
    free = complete(model, max_tokens=24, temperature=1.0, seed=3)
    text = free.choices[0].message.content
    assert free.usage.completion_tokens <= 24
    stop = text[len(text) // 2 : len(text) // 2 + 2]
    assert stop.strip(), f"the sample has no text to stop at: {text!r}"
    stopped = complete(model, max_tokens=24, temperature=1.0, seed=3, stop=[stop])
    assert stopped.choices[0].message.content == text.split(stop, 1)[0]
    assert stopped.choices[0].finish_reason == "stop"
    assert stopped.usage.completion_tokens < free.usage.completion_tokens  # decoding ended
    capped = complete(model, max_tokens=3, temperature=1.0, seed=3)
    assert capped.usage.completion_tokens == 3 and capped.choices[0].finish_reason == "length"


@pytest.mark.parametrize("engine", ENGINES)
def test_n_samples_seeds_and_usage(tiny_model: str, engine: str) -> None:
    model = f"local/{tiny_model}?engine={engine}"
    first = complete(model, max_tokens=10, temperature=0.9, top_p=0.95, n=4, seed=11)
    again = complete(model, max_tokens=10, temperature=0.9, top_p=0.95, n=4, seed=11)
    assert [c.index for c in first.choices] == [0, 1, 2, 3]
    assert texts(first) == texts(again) and len(set(texts(first))) > 1
    assert texts(first) != texts(complete(model, max_tokens=10, temperature=0.9, n=4, seed=12))
    assert 4 <= first.usage.completion_tokens <= 40  # every sample's tokens, counted
    assert first.usage.prompt_tokens > 5
    assert first.usage.total_tokens == first.usage.prompt_tokens + first.usage.completion_tokens


def test_seeded_requests_reproduce_under_concurrency_on_ct2(tiny_model: str) -> None:
    """A seeded ct2 request is decoded on its own replica: other traffic cannot change it."""
    model = f"local/{tiny_model}?engine=ct2"
    alone = {s: texts(complete(model, max_tokens=8, temperature=1.0, seed=s)) for s in (1, 2)}
    jobs = [1, 2, None, 1, None, 2]
    with ThreadPoolExecutor(len(jobs)) as pool:
        crowded = list(
            pool.map(lambda s: texts(complete(model, max_tokens=8, temperature=1.0, seed=s)), jobs)
        )
    for seed, got in zip(jobs, crowded, strict=True):
        if seed is not None:
            assert got == alone[seed]


def test_ct2_shares_one_prefill_between_samples_of_a_prompt(tiny_model: str) -> None:
    loaded = MODELS.get(f"local/{tiny_model}?engine=ct2")
    generator = loaded.generator
    ids = prompt_ids(loaded.tokenizer, MESSAGES)
    other = prompt_ids(loaded.tokenizer, [{"role": "user", "content": "Hi"}])
    rows, calls = generator.rows_decoded, generator.batches_run
    sampled = [GenerationRequest(ids, max_new_tokens=8, temperature=1.0)] * 4
    results = generator.generate([*sampled, GenerationRequest(other, 8, temperature=1.0)])
    assert generator.batches_run - calls == 2  # 4 samples of one prompt: one call, k=4
    assert generator.rows_decoded - rows == 2  # ... and one row for them (one prefill)
    assert len({tuple(r.token_ids) for r in results[:4]}) > 1  # still 4 different samples


def test_ct2_greedy_rows_match_single_decoding(tiny_model: str) -> None:
    loaded = MODELS.get(f"local/{tiny_model}?engine=ct2")
    long = prompt_ids(loaded.tokenizer, MESSAGES)
    short = prompt_ids(loaded.tokenizer, [{"role": "user", "content": "Hi"}])
    requests = [
        GenerationRequest(long, 9),
        GenerationRequest(short, 4),
        GenerationRequest(long, 12),
    ]
    batched = loaded.generator.generate(requests)
    alone = [loaded.generator.generate([r])[0] for r in requests]
    assert [r.token_ids for r in batched] == [r.token_ids for r in alone]
    assert [len(r.token_ids) for r in batched] == [9, 4, 12]


def test_ct2_reads_a_shared_prompt_prefix_once_and_decodes_the_same(tiny_model: str) -> None:
    """Few-shot prompts (one long system message and demos, then each problem) pass their
    common tokens once as CTranslate2's static prompt; greedy rows still decode exactly as
    each prompt alone does, and sampled rows still get their k samples."""
    loaded = MODELS.get(f"local/{tiny_model}?engine=ct2")
    generator = loaded.generator
    demos = " ".join(f"Example {i}: {i} plus {i} is {2 * i}." for i in range(30))
    prompts = [
        prompt_ids(loaded.tokenizer, [{"role": "system", "content": demos},
                                      {"role": "user", "content": question}])
        for question in ("What is 3 plus 4?", "Hi", "What is 10 plus 12, and why?")
    ]  # fmt: skip
    requests = [GenerationRequest(ids, max_new_tokens=6 + i) for i, ids in enumerate(prompts)]
    shared = generator.prefix_tokens_shared
    batched = generator.generate(requests)
    assert generator.prefix_tokens_shared - shared >= 2 * 64  # read once, not three times
    alone = [generator.generate([r])[0] for r in requests]
    assert [r.token_ids for r in batched] == [r.token_ids for r in alone]
    assert [len(r.token_ids) for r in batched] == [6, 7, 8]

    sampled = [GenerationRequest(ids, max_new_tokens=5, temperature=1.0) for ids in prompts]
    shared, calls = generator.prefix_tokens_shared, generator.batches_run
    results = generator.generate([r for r in sampled for _ in range(3)])  # 3 rows, k = 3
    assert generator.batches_run - calls == 1
    assert generator.prefix_tokens_shared - shared >= 2 * 64
    assert len(results) == 9 and all(len(r.token_ids) <= 5 for r in results)
    assert len({tuple(r.token_ids) for r in results[:3]}) > 1  # still 3 samples of a prompt


def test_shared_prefix_leaves_every_row_a_token_of_its_own() -> None:
    from gcop.local.ct2 import shared_prefix_length

    assert shared_prefix_length([[1, 2, 3, 4], [1, 2, 3, 5]]) == 3
    assert shared_prefix_length([[1, 2, 3], [1, 2, 3, 4]]) == 2  # a prompt inside another
    assert shared_prefix_length([[7, 2], [1, 2]]) == 0


def test_automatic_engine_choice(tiny_model: str, tmp_path: Path) -> None:
    adapter = _adapter(tiny_model, tmp_path / "adapter")
    assert MODELS.get(f"local/{tiny_model}").engine == "ct2"  # CPU, ctranslate2 installed
    assert MODELS.get(adapter_spec(tiny_model, adapter)).engine == "torch"  # live LoRA
    assert MODELS.get(f"local/{tiny_model}?engine=torch").engine == "torch"
    engines = MODELS.engines()  # what reports record: each loaded copy -> its engine
    assert engines[f"local/{tiny_model}?engine=ct2"] == "ct2"
    assert engines[f"{adapter_spec(tiny_model, adapter)}&engine=torch"] == "torch"


def test_ct2_serves_a_merged_adapter_cached_by_content(tiny_model: str, tmp_path: Path) -> None:
    from gcop.local import ct2

    adapter = _adapter(tiny_model, tmp_path / "a")
    spec = LocalModelSpec.parse(adapter_spec(tiny_model, adapter)).with_engine("ct2")
    merged = complete(spec.format(), max_tokens=10, temperature=0)
    live = complete(spec.with_engine("torch").format(), max_tokens=10, temperature=0)
    plain = complete(f"local/{tiny_model}?engine=ct2", max_tokens=10, temperature=0)
    assert texts(merged) != texts(plain)  # the adapter was merged in
    assert texts(merged) == texts(live)  # ... and means what it means on the torch loop
    copy = tmp_path / "copy"
    copy.mkdir()
    for item in adapter.iterdir():
        (copy / item.name).write_bytes(item.read_bytes())
    folder = ct2.converted(tiny_model, str(adapter))
    assert ct2.converted(tiny_model, str(copy)) == folder  # same content, same conversion
    assert not [p for p in folder.parent.iterdir() if ".partial" in p.name or ".merged" in p.name]


@pytest.mark.parametrize("engine", ENGINES)
def test_bad_sampling_options_are_refused(tiny_model: str, engine: str) -> None:
    for bad in ({"max_tokens": -1}, {"n": 0}):
        with pytest.raises(litellm.BadRequestError, match="max_tokens|n="):
            complete(f"local/{tiny_model}?engine={engine}", temperature=0, **bad)


def test_missing_engine_names_the_extra_to_install(tiny_model: str) -> None:
    """A real interpreter in which `import ctranslate2` fails, as on a plain install."""
    script = f"""
import sys
sys.modules["ctranslate2"] = None  # importing it now raises ImportError
import litellm, gcop
from gcop.lm import check_model
try:
    check_model("local/{tiny_model}?engine=ct2")
except Exception as error:
    print("CHECK:", error)
try:
    litellm.completion(model="local/{tiny_model}?engine=ct2",
                       messages=[{{"role": "user", "content": "hi"}}], max_tokens=2)
except Exception as error:
    print("CALL:", error)
print("AUTO:", gcop.local.MODELS.get("local/{tiny_model}").engine)
"""
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                         timeout=300)  # fmt: skip
    out = run.stdout
    assert "CHECK:" in out and "pip install 'exectune[ct2]'" in out.split("CALL:")[0], run.stderr
    assert "CALL:" in out and "pip install 'exectune[ct2]'" in out.split("CALL:")[1]
    assert "AUTO: torch" in out  # without CTranslate2 the automatic choice is the torch loop


def _adapter(tiny_model: str, folder: Path) -> Path:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    peft_model = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    torch.manual_seed(0)
    for name, param in peft_model.named_parameters():
        if "lora_B" in name:
            param.data.normal_(0, 2.0)  # a trained adapter is not the identity
    peft_model.save_pretrained(folder)
    return folder


def test_grpo_vllm_options_reach_grpo_config(tmp_path: Path, monkeypatch) -> None:
    """No GPU here: only that the stage config reaches TRL's GRPOConfig, and that asking
    for vLLM on a CPU is refused with the reason."""
    from gcop.errors import ConfigError
    from gcop.optimizers import rl
    from gcop.optimizers.rl import RLStageConfig, grpo_args

    default = grpo_args(RLStageConfig(), tmp_path)
    assert default.use_vllm is False  # on CPU nothing changes
    with pytest.raises(ConfigError, match="CUDA"):
        grpo_args(RLStageConfig(use_vllm=True), tmp_path)
    with pytest.raises(ConfigError, match="colocate"):
        RLStageConfig(vllm_mode="remote")
    monkeypatch.setattr(rl, "_check_vllm", lambda: None)  # as on a CUDA machine with vLLM
    args = grpo_args(RLStageConfig(use_vllm=True, vllm_gpu_memory_utilization=0.5), tmp_path)
    assert (args.use_vllm, args.vllm_mode, args.vllm_gpu_memory_utilization) == (
        True, "colocate", 0.5,
    )  # fmt: skip


def test_a_vllm_server_is_a_core_through_hosted_vllm(api, monkeypatch) -> None:
    """`hosted_vllm/<model>` speaks vLLM's OpenAI-compatible API: here a real HTTP server
    on 127.0.0.1 stands in for `vllm serve`, found through HOSTED_VLLM_API_BASE."""
    from gcop.lm import check_model

    monkeypatch.setenv("HOSTED_VLLM_API_BASE", api.base_url)
    model = "hosted_vllm/Qwen/Qwen2.5-Coder-1.5B-Instruct"
    check_model(model)
    reply = litellm.completion(model=model, messages=MESSAGES, max_tokens=32, temperature=0)
    assert "7" in reply.choices[0].message.content and api.model.requests == 1
    assert api.model.bodies[-1]["model"] == "Qwen/Qwen2.5-Coder-1.5B-Instruct"


def test_schema_constrained_requests_go_to_the_torch_loop(tiny_model: str) -> None:
    """response_format is decoded by the torch loop's sampler: the automatic choice sends
    such a request there, and an explicit ct2 refuses it instead of ignoring the schema."""
    schema = {"type": "json_schema", "json_schema": {"name": "plan", "schema": {"type": "object"}}}
    torch_before = MODELS.get(f"local/{tiny_model}?engine=torch").generator.batches_run
    complete(f"local/{tiny_model}", max_tokens=4, temperature=0, response_format=schema)
    assert MODELS.get(f"local/{tiny_model}?engine=torch").generator.batches_run > torch_before
    with pytest.raises(litellm.BadRequestError, match="engine=ct2"):
        complete(f"local/{tiny_model}?engine=ct2", max_tokens=4, response_format=schema)


def test_ct2_calls_group_prompts_of_similar_length() -> None:
    """CTranslate2 steps through the prompts' length differences one token at a time, so a
    call holds prompts within PROMPT_LENGTH_SPREAD tokens of each other (and <= max rows)."""
    from gcop.local.ct2 import _Row, length_buckets

    rows = [_Row(GenerationRequest([7] * n, 4)) for n in (100, 5, 40, 130, 36, 6, 131, 37)]
    buckets = list(length_buckets(rows, max_rows=2, spread=32))
    lengths = [[len(row.request.prompt_ids) for row in bucket] for bucket in buckets]
    assert lengths == [[5, 6], [36, 37], [40], [100, 130], [131]]
    assert sorted(id(r) for b in buckets for r in b) == sorted(id(r) for r in rows)


def test_a_batch_keeps_gathering_while_requests_keep_arriving() -> None:
    """Concurrent callers reach the queue one after another: the window restarts at each
    arrival (one decode call for a stream of requests 50 ms apart under a 500 ms window),
    a quiet gap ends the batch, and `max_wait_s` and the row limit bound it."""
    import queue
    import threading
    import time

    from gcop.local.engine import gather_batch

    def feed(source: queue.Queue, items: range, gap_s: float) -> threading.Thread:
        def run() -> None:
            for item in items:
                source.put(item)
                time.sleep(gap_s)

        thread = threading.Thread(target=run)
        thread.start()
        return thread

    source: queue.Queue = queue.Queue()
    feeder = feed(source, range(6), 0.05)  # 6 arrivals over 250 ms, each within the window
    assert gather_batch(source, window_s=0.5, limit=32) == list(range(6))
    feeder.join()

    for item in range(10):
        source.put(item)
    assert gather_batch(source, window_s=0.0, limit=4) == [0, 1, 2, 3]  # queued: taken
    assert gather_batch(source, window_s=0.0, limit=10, rows=lambda i: 3) == [4, 5, 6, 7]
    assert gather_batch(source, window_s=0.0, limit=32) == [8, 9]

    feeder = feed(source, range(100), 0.01)  # a steady stream: the cap ends the batch
    batch = gather_batch(source, window_s=0.5, limit=1000, max_wait_s=0.2)
    feeder.join()
    assert 1 <= len(batch) < 100


def test_a_cached_reply_answers_only_the_engine_that_decoded_it(
    tiny_model: str, tmp_path: Path, fresh_cache, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`local/<model>` decodes on ct2 here and on torch where ctranslate2 is missing (or on a
    GPU): the same model string, two different replies, so two cache entries."""
    from gcop.lm import GcopLM

    model = f"local/{tiny_model}"
    adapter = _adapter(tiny_model, tmp_path / "adapter")
    assert GcopLM(model).engine.key_params == {"local_engine": "ct2"}
    assert GcopLM(adapter_spec(tiny_model, adapter)).engine.key_params == {"local_engine": "torch"}
    assert GcopLM("openai/gpt-4o-mini").engine.key_params == {}  # paid calls keep their keys
    GcopLM(model, max_tokens=6)("What is 3 plus 4?")
    GcopLM(model, max_tokens=6)("What is 3 plus 4?")
    assert len(fresh_cache) == 1  # the same engine: a hit
    monkeypatch.setattr("gcop.local.engines.ct2_installed", lambda: False)
    GcopLM(model, max_tokens=6)("What is 3 plus 4?")
    assert len(fresh_cache) == 2  # the torch engine: not answered from the ct2 reply
