"""The structure-aware executability reward of ExecTune's RL stage (a TRL reward function).

For each guide completion: how well does it follow the strategy's format (graded: written
exactly, repaired from a near miss, parsed but breaking a constraint, some structure, none)?
does it give the answer away (leak)? does the core, following it, succeed (execution)? how
does that compare with the core alone on the same example (a bonus where the plan turns a
failure into a success, a penalty where it breaks a success)? and what does deployment pay
for it, relative to the core alone? With the default weights the order is

    helpful (1.7) > valid, core succeeds anyway (1.2) > valid, core fails anyway (0.2)
    > repaired/partial format (0.02-0.12) > nothing usable (0.0) > harmful (-0.6)
    > leaking (-0.8)                                          (before the cost term)

The cost term is charged on every branch, because deployment pays on every branch: the
guide's tokens plus the core's call, guided when the strategy is valid, alone (the
`on_invalid="core_alone"` fallback) when it is not, as a fraction of what the core alone
costs: `cost = (guide + core call) / core alone - 1`. It is scale-free, so "valid and
correct" outranks "unparseable" at API prices as at local ones; an unparseable strategy
pays the guide's tokens for nothing.

Core calls are concurrent (the `local/` provider batches them) and cached, so a strategy
the core has already run costs nothing new; the core-alone result is computed once per
example.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import dspy

from gcop.program import GCoP
from gcop.repair import text_items
from gcop.strategy import StrategyParseError, Verdict
from gcop.task import Metric

FORMAT_CREDIT = {
    Verdict.VALID: 1.0,
    Verdict.REPAIRED: 0.6,
    Verdict.CONSTRAINT: 0.3,
    Verdict.OVER_BUDGET: 0.3,
    "structure": 0.1,
    Verdict.UNPARSEABLE: 0.0,
}
"""Graded format credit, so that a GRPO group whose samples are all invalid still has a
reward spread to learn from (a near miss beats prose)."""


@dataclass
class RewardWeights:
    """Weights of the reward components; every one is logged separately."""

    valid: float = field(
        default=0.2, metadata={"help": "times the format credit (1 for a strategy written exactly)"}
    )
    leak_penalty: float = field(default=1.0, metadata={"help": "for a strategy that leaks"})
    success: float = field(default=1.0, metadata={"help": "when the guided core succeeds"})
    bonus: float = field(default=0.5, metadata={"help": "guided success where alone fails"})
    harm_penalty: float = field(default=0.8, metadata={"help": "guided failure where alone wins"})
    cost_weight: float = field(
        default=0.1,
        metadata={"help": "per unit of deployment cost relative to the core alone (0.1: a "
                  "plan that doubles the cost must raise success by 0.1 to pay)"},
    )  # fmt: skip
    task_only: bool = field(
        default=False,
        metadata={"help": "advisor-style: the reward is the task metric of what deployment "
                  "returns (guided if the strategy parses, else the core alone); no format, "
                  "leak or cost terms"},
    )  # fmt: skip


@dataclass
class RewardParts:
    valid: float = 0.0
    """The format credit, 0 to 1 (see FORMAT_CREDIT); 1 for a strategy written exactly."""
    leak: float = 0.0
    success: float = 0.0
    bonus: float = 0.0
    harm: float = 0.0
    cost: float = 0.0
    """What deployment pays for this completion, relative to the core alone, minus 1."""

    def total(self, w: RewardWeights) -> float:
        gains = w.valid * self.valid + w.success * self.success + w.bonus * self.bonus
        losses = w.leak_penalty * self.leak + w.harm_penalty * self.harm
        return gains - losses - w.cost_weight * self.cost


class ExecutabilityReward:
    """`reward(prompts, completions, example_index, **_) -> list[float]`, TRL's contract.

    `example_index` (a dataset column) says which training example each prompt came from.
    `history` keeps the mean of every component per call, with the optimizer step it trains,
    and the fraction of prompt groups whose rewards are all equal (no advantage to learn
    from), for the compile report; with `log_path` each row is also appended there as it is
    made, so a killed RL stage keeps the rows of the steps it finished. `guide_price` is the
    guide's (input, output) dollars per token; TRL passes the completion token ids, and the
    prompt's tokens are estimated at 4 characters each (they are the same for every sample
    of a prompt, so they shift the reward level, not the advantages).
    """

    __name__ = "executability"

    def __init__(self, program: GCoP, examples: list[dspy.Example], metric: Metric,
                 weights: RewardWeights | None = None, num_threads: int = 16,
                 log_path: Path | None = None,
                 guide_price: tuple[float, float] = (0.0, 0.0)) -> None:  # fmt: skip
        self.program = program
        self.examples = examples
        self.metric = metric
        self.weights = weights or RewardWeights()
        self.num_threads = num_threads
        self.history: list[dict[str, float]] = []
        self.log_path = log_path
        self.guide_price = guide_price
        self._alone: dict[int, tuple[bool, float]] = {}
        self._lock = threading.Lock()

    def __call__(self, prompts, completions, example_index, **columns: Any) -> list[float]:
        texts = [c[-1]["content"] if isinstance(c, list) else str(c) for c in completions]
        indices = [int(i) for i in example_index]
        token_ids = columns.get("completion_ids") or [None] * len(texts)
        guide_costs = [
            self.guide_cost(prompt, text, ids)
            for prompt, text, ids in zip(prompts, texts, token_ids, strict=True)
        ]
        with ThreadPoolExecutor(max_workers=self.num_threads) as pool:
            parts = list(pool.map(self.score, texts, indices, guide_costs))
        rewards = [p.total(self.weights) for p in parts]
        row = {k: sum(getattr(p, k) for p in parts) / len(parts) for k in asdict(RewardParts())}
        state = columns.get("trainer_state")  # TRL passes it; the step being trained is next
        step = state.global_step + 1 if state is not None else len(self.history) + 1
        row = {"step": step, **row, "reward": sum(rewards) / len(rewards),
               "zero_spread_groups": zero_spread_fraction(indices, rewards)}  # fmt: skip
        self.history.append(row)
        if self.log_path is not None:
            with self.log_path.open("a") as log:  # one short line per call: a crash cuts at
                log.write(json.dumps(row) + "\n")  # most the last row, which readers skip
        return rewards

    def guide_cost(self, prompt: Any, completion: str, completion_ids: list[int] | None) -> float:
        """Dollars the guide spends on this completion (see the class docstring)."""
        prompt_text = (
            " ".join(str(m.get("content", "")) for m in prompt)
            if isinstance(prompt, list)
            else str(prompt or "")
        )
        completion_tokens = (
            len(completion_ids) if completion_ids is not None else len(completion) / 4
        )
        return self.guide_price[0] * len(prompt_text) / 4 + self.guide_price[1] * completion_tokens

    def score(self, completion: str, index: int, guide_cost: float = 0.0) -> RewardParts:
        """The reward components of one guide completion for training example `index`."""
        example = self.examples[index]
        if self.weights.task_only:
            return RewardParts(success=self.task_reward(completion, index))
        alone, alone_cost = self.core_alone(index)
        base = max(alone_cost, 1e-12)
        try:
            strategy = self.program.guide.read(completion)
        except (StrategyParseError, ValueError):
            credit = FORMAT_CREDIT["structure" if text_items(completion) else Verdict.UNPARSEABLE]
            return RewardParts(valid=credit, cost=guide_cost / base)
        validity = strategy.check(example)
        if validity.verdict == Verdict.LEAK:
            return RewardParts(leak=1.0, cost=guide_cost / base)
        if not validity.ok:
            return RewardParts(valid=FORMAT_CREDIT[validity.verdict], cost=guide_cost / base)
        outcome = self.program.execute(strategy, example)
        succeeded = self.metric(example, outcome) > 0
        return RewardParts(
            valid=FORMAT_CREDIT[validity.verdict],
            success=float(succeeded),
            bonus=float(succeeded and not alone),
            harm=float(alone and not succeeded),
            cost=(guide_cost + outcome.usage["cost"]) / base - 1.0,
        )

    def task_reward(self, completion: str, index: int) -> float:
        """The task metric of what `GCoP` returns for this completion at deployment: the
        core guided by the strategy when it parses and meets its constraints (leaks are not
        checked: the guide never sees the answer), else the core alone."""
        try:
            strategy = self.program.guide.read(completion)
        except (StrategyParseError, ValueError):
            strategy = None
        if strategy is None or not strategy.check().ok:
            return float(self.core_alone(index)[0])
        example = self.examples[index]
        outcome = self.program.execute(strategy, example)
        return float(self.metric(example, outcome) > 0)

    def core_alone(self, index: int) -> tuple[bool, float]:
        """(does the core alone solve example `index`, what does that call cost), once."""
        with self._lock:
            if index in self._alone:
                return self._alone[index]
        example = self.examples[index]
        outcome = self.program.core(**dict(example.inputs()))
        result = (self.metric(example, outcome) > 0, outcome.usage["cost"])
        with self._lock:
            self._alone[index] = result
        return result

    def core_alone_succeeds(self, index: int) -> bool:
        return self.core_alone(index)[0]


def zero_spread_fraction(indices: list[int], rewards: list[float]) -> float:
    """The fraction of prompt groups (completions of one example) whose rewards are all
    equal: GRPO's advantage is zero for every member of such a group."""
    groups: dict[int, list[float]] = {}
    for index, reward in zip(indices, rewards, strict=True):
        groups.setdefault(index, []).append(reward)
    sized = [g for g in groups.values() if len(g) > 1]
    if not sized:
        return 0.0
    return sum(max(g) - min(g) < 1e-9 for g in sized) / len(sized)
