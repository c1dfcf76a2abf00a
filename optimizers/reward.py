"""The structure-aware executability reward of ExecTune's RL stage (a TRL reward function).

For each guide completion: does it parse into the strategy type and meet its constraints
(validity)? does it give the answer away (leak)? does the core, following it, succeed
(execution)? and how does that compare with the core alone on the same example (a bonus
where the plan turns a failure into a success, a penalty where it breaks a success)? Minus
the core's cost. With the default weights the order is

    helpful (1.7) > valid, core succeeds anyway (1.2) > valid, core fails anyway (0.2)
    > invalid (0.0) > harmful (-0.6) > leaking (-0.8)     (before the cost term)

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
from dspy.utils.exceptions import AdapterParseError
from pydantic import ValidationError

from gcop.program import STRATEGY_FIELD, GCoP
from gcop.task import Metric


@dataclass
class RewardWeights:
    """Weights of the reward components; every one is logged separately."""

    valid: float = field(default=0.2, metadata={"help": "for a strategy that parses and obeys"})
    leak_penalty: float = field(default=1.0, metadata={"help": "for a strategy that leaks"})
    success: float = field(default=1.0, metadata={"help": "when the guided core succeeds"})
    bonus: float = field(default=0.5, metadata={"help": "guided success where alone fails"})
    harm_penalty: float = field(default=0.8, metadata={"help": "guided failure where alone wins"})
    cost_weight: float = field(default=1000.0, metadata={"help": "per dollar of core cost"})


@dataclass
class RewardParts:
    valid: float = 0.0
    leak: float = 0.0
    success: float = 0.0
    bonus: float = 0.0
    harm: float = 0.0
    cost: float = 0.0

    def total(self, w: RewardWeights) -> float:
        gains = w.valid * self.valid + w.success * self.success + w.bonus * self.bonus
        losses = w.leak_penalty * self.leak + w.harm_penalty * self.harm
        return gains - losses - w.cost_weight * self.cost


class ExecutabilityReward:
    """`reward(prompts, completions, example_index, **_) -> list[float]`, TRL's contract.

    `example_index` (a dataset column) says which training example each prompt came from.
    `history` keeps the mean of every component per call, with the optimizer step it trains,
    for the compile report; with `log_path` each row is also appended there as it is made,
    so a killed RL stage keeps the rows of the steps it finished.
    """

    __name__ = "executability"

    def __init__(self, program: GCoP, examples: list[dspy.Example], metric: Metric,
                 weights: RewardWeights | None = None, num_threads: int = 16,
                 log_path: Path | None = None) -> None:  # fmt: skip
        self.program = program
        self.examples = examples
        self.metric = metric
        self.weights = weights or RewardWeights()
        self.num_threads = num_threads
        self.history: list[dict[str, float]] = []
        self.log_path = log_path
        self._alone: dict[int, bool] = {}
        self._lock = threading.Lock()

    def __call__(self, prompts, completions, example_index, **columns: Any) -> list[float]:
        texts = [c[-1]["content"] if isinstance(c, list) else str(c) for c in completions]
        with ThreadPoolExecutor(max_workers=self.num_threads) as pool:
            parts = list(pool.map(self.score, texts, [int(i) for i in example_index]))
        rewards = [p.total(self.weights) for p in parts]
        row = {k: sum(getattr(p, k) for p in parts) / len(parts) for k in asdict(RewardParts())}
        state = columns.get("trainer_state")  # TRL passes it; the step being trained is next
        step = state.global_step + 1 if state is not None else len(self.history) + 1
        row = {"step": step, **row, "reward": sum(rewards) / len(rewards)}
        self.history.append(row)
        if self.log_path is not None:
            with self.log_path.open("a") as log:  # one short line per call: a crash cuts at
                log.write(json.dumps(row) + "\n")  # most the last row, which readers skip
        return rewards

    def score(self, completion: str, index: int) -> RewardParts:
        """The reward components of one guide completion for training example `index`."""
        example = self.examples[index]
        strategy_type = self.program.guide.strategy_type
        try:
            parsed = dspy.ChatAdapter().parse(self.program.guide.predict.signature, completion)
            strategy = strategy_type.parse(parsed[STRATEGY_FIELD])
        except (AdapterParseError, ValidationError, ValueError):
            return RewardParts()
        validity = strategy.check(example)
        if validity.verdict == "leak":
            return RewardParts(valid=1.0, leak=1.0)
        if not validity.ok:
            return RewardParts()
        outcome = self.program.core(**dict(example.inputs()), strategy=strategy.render())
        succeeded = self.metric(example, outcome) > 0
        alone = self.core_alone_succeeds(index)
        return RewardParts(
            valid=1.0,
            success=float(succeeded),
            bonus=float(succeeded and not alone),
            harm=float(alone and not succeeded),
            cost=outcome.usage["cost"],
        )

    def core_alone_succeeds(self, index: int) -> bool:
        with self._lock:
            if index in self._alone:
                return self._alone[index]
        example = self.examples[index]
        succeeded = self.metric(example, self.program.core(**dict(example.inputs()))) > 0
        with self._lock:
            self._alone[index] = succeeded
        return succeeded
