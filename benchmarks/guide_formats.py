"""How often does a guide write a usable strategy, per prompt format?

    python benchmarks/guide_formats.py --guide local/smollm2-135m-instruct --limit 16 \
        --formats plain,chat --corpus tests/data/guide_outputs.jsonl

Runs the (untrained) guide on a seeded sample of GSM8K train questions under each prompt
format and counts the verdicts (valid, repaired, unparseable, ...), with 95% intervals for
the usable (valid or repaired) rate. `--corpus` appends every raw output with its verdict,
so the lenient parser's tests run on real model outputs.
"""

from __future__ import annotations

import argparse
import json
import os
import random
from collections import Counter
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from gcop.metrics import wilson  # noqa: E402
from gcop.program import Guide  # noqa: E402
from gcop.programs import get_task  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--guide", default="local/smollm2-135m-instruct")
    parser.add_argument("--task", default="gsm8k")
    parser.add_argument("--limit", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--formats", default="plain,chat")
    parser.add_argument("--temperature", type=float, default=0.0)
    parser.add_argument("--corpus", type=Path)
    args = parser.parse_args()

    task = get_task(args.task)
    train = task.load_split("train")
    examples = random.Random(args.seed).sample(train, args.limit)
    from concurrent.futures import ThreadPoolExecutor

    for name in args.formats.split(","):
        guide = Guide(task.strategy_type, args.guide, adapter=name,
                      max_tokens=task.guide_max_tokens, temperature=args.temperature)  # fmt: skip
        with ThreadPoolExecutor(16) as pool:
            predictions = list(pool.map(lambda e, g=guide: g(**dict(e.inputs())), examples))
        verdicts = Counter(str(p.validity.verdict) for p in predictions)
        usable = sum(p.validity.ok for p in predictions)
        print(f"{args.guide} format={name} n={len(examples)} seed={args.seed}: "
              f"{dict(verdicts)}; usable {usable}/{len(examples)} "
              f"{wilson(usable, len(examples))}")  # fmt: skip
        if args.corpus:
            args.corpus.parent.mkdir(parents=True, exist_ok=True)
            with args.corpus.open("a") as out:
                for example, p in zip(examples, predictions, strict=True):
                    raw = p.raw if p.raw is not None else _reply(guide, example, p)
                    out.write(json.dumps({"model": args.guide, "format": name,
                                          "question": example.question, "output": raw,
                                          "verdict": str(p.validity.verdict)}) + "\n")  # fmt: skip


def _reply(guide: Guide, example, prediction) -> str:
    """The text the guide wrote for a parsed strategy (the call cache has it)."""
    history = guide.lm.history
    prompt = guide.format_prompt(**dict(example.inputs()))
    for entry in reversed(history):
        if entry.get("messages") == prompt:
            return entry["outputs"][0] if entry.get("outputs") else ""
    return prediction.strategy.render() if prediction.strategy else ""


if __name__ == "__main__":
    main()
