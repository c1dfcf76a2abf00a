"""A LiteLLM API model as the core, guided by a small local model.

    export OPENAI_API_KEY=sk-...
    python examples/api_core.py                                  # openai/gpt-4o-mini
    python examples/api_core.py --core anthropic/claude-3-5-haiku-latest   # ANTHROPIC_API_KEY

Any LiteLLM model string works as the core. Without the provider's key this prints which
variable to set and exits with status 1, before any model is loaded.
"""

from __future__ import annotations

import argparse
import sys

from gcop import Core, CoreOnly, GCoP, GcopLM, Guide, evaluate, get_task
from gcop.checks import check_credentials
from gcop.errors import GcopError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--core", default="openai/gpt-4o-mini", help="a LiteLLM model string")
    parser.add_argument("--guide", default="local/smollm2-135m-instruct")
    parser.add_argument("--task", default="gsm8k", help="a registered task (gcop bench --help)")
    parser.add_argument("--limit", type=int, default=10, help="dev examples to score")
    args = parser.parse_args(argv)

    try:
        check_credentials(GcopLM(args.core))  # names the missing variable, e.g. OPENAI_API_KEY
    except GcopError as error:
        print(f"api_core.py: {error}", file=sys.stderr)
        return 1

    task = get_task(args.task)
    core = Core(args.core, max_tokens=task.core_max_tokens)
    program = GCoP(Guide(task.strategy_type, args.guide, max_tokens=task.guide_max_tokens), core)
    dev = task.load_split("dev")[: args.limit]
    for name, system in (("core alone", CoreOnly(core)), ("guide + core", program)):
        report = evaluate(system, dev, task.metric, system=name, num_threads=8)
        print(
            f"{name:<13} accuracy {report.accuracy}  $/query {report.cost_per_query.estimate:.2e}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
