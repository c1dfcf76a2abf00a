"""ExecTune: compile a GCoP program so that its guide writes strategies its core can execute.

    def compile(self, program, trainset, valset=None):
        accepted = self.sample(program, trainset)           # stage 1: acceptance sampling
        guide = self.finetune(program.guide, accepted)       # stage 2: LoRA SFT
        guide = self.reinforce(guide, program, trainset)     # stage 3: executability RL
        return program.with_guide(guide)

ExecTune is a `dspy.teleprompt.Teleprompter` (:class:`~gcop.optimizers.base.GcopOptimizer`):
`compile(student, *, trainset, teacher=None, valset=None)` as in DSPy, or positionally
`compile(program, trainset, valset)`. Each stage writes its artifacts atomically under
`output_dir/<stage>/` (a :class:`~gcop.optimizers.base.StageDir`); a rerun skips the stages
that finished and a killed stage resumes from its last checkpoint. All model calls go
through the call cache, so neither repeats a core call.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import dspy

from gcop.atomic import write_json, write_text
from gcop.calls import default_cache
from gcop.checks import (
    check_credentials,
    check_examples,
    check_strategy_type,
    without_speed_options,
)
from gcop.errors import ConfigError, GcopError
from gcop.lm import GcopLM
from gcop.local.spec import LocalModelSpec
from gcop.metrics import UTILITY_LAMBDAS, Report, evaluate
from gcop.optimizers.base import ADAPTER, GcopOptimizer, StageDir, is_main_process
from gcop.optimizers.report import plot_compile_report
from gcop.optimizers.reward import ExecutabilityReward, RewardWeights
from gcop.optimizers.rl import RLStageConfig, reinforce
from gcop.optimizers.sampling import (
    REFERENCE_SOURCES,
    Attempt,
    SamplingConfig,
    examples_by_key,
    sample_strategies,
    write_sampling,
)
from gcop.optimizers.sft import SFTStageConfig, finetune, last_checkpoint
from gcop.paths import portable
from gcop.program import Core, CoreOnly, GCoP, Guide
from gcop.registry import register_optimizer
from gcop.task import Metric

STAGES = ("sample", "sft", "rl")
log = logging.getLogger(__name__)


class OutputDirConflictError(GcopError):
    """`output_dir` holds a compile made with a different configuration."""


LATER_OPTIONS = {
    ("sampling", "accept"): "executes",
    ("reward", "task_only"): False,
    ("sft", "precision"): "auto",
    ("rl", "precision"): "auto",
}
"""Options added after compiles had been made: at their default they are left out of a
compile's identity (`config.json`), so an output folder made before they existed resumes."""


@dataclass
class ExecTuneConfig:
    teacher: str | list[str] | None
    cost_weight: float = 0.1
    seed: int = 0
    stages: tuple[str, ...] = STAGES
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    sft: SFTStageConfig = field(default_factory=SFTStageConfig)
    rl: RLStageConfig = field(default_factory=RLStageConfig)
    reward: RewardWeights = field(default_factory=RewardWeights)


@register_optimizer("exectune")
class ExecTune(GcopOptimizer):
    """Configuration in `__init__`, work in :meth:`compile` (DSPy's optimizer contract).

    Args:
        teacher: the LM that writes stage 1's candidate strategies (a LiteLLM string or a
            dspy LM); may instead be given to `compile(..., teacher=...)`.
        metric: the task metric, `metric(example, prediction) -> float`.
        cost_weight, sampling, sft, rl, reward: every knob, one dataclass per stage.
        stages: which of sample, sft, rl to run (a later run may add the rest).
        output_dir: the run's folder; a rerun resumes there.
    """

    stage_markers = {"sample": "summary.json", "sft": ADAPTER, "rl": ADAPTER}
    config_types = {"sampling": SamplingConfig, "sft": SFTStageConfig, "rl": RLStageConfig,
                    "reward": RewardWeights}  # fmt: skip
    """Every knob, one dataclass per stage: `gcop compile` makes its options from these."""
    cli_aliases = {"sampling.candidates": "--candidates", "sampling.show_reference":
                   "--show-reference", "rl.max_steps": "--rl-steps",
                   "rl.per_device_batch_size": "--rl-batch-size",
                   "reward.cost_weight": "--cost-weight"}  # fmt: skip
    """Short flags for the most used options (the generated ones are `--<stage>-<field>`)."""
    model_free_sources = tuple(REFERENCE_SOURCES)
    """Stage-1 sources that are not models (no weights to pull, no credentials to check)."""

    def __init__(
        self,
        teacher: str | dspy.BaseLM | list[str | dspy.BaseLM] | None = None,
        metric: Metric | None = None,
        *,
        cost_weight: float = 0.1,
        sampling: SamplingConfig | None = None,
        sft: SFTStageConfig | None = None,
        rl: RLStageConfig | None = None,
        reward: RewardWeights | None = None,
        stages: tuple[str, ...] = STAGES,
        output_dir: str | Path = "exectune-run",
        seed: int = 0,
        eval_threads: int = 16,
        exec_samples: int = 4,
    ) -> None:
        """`teacher`: a LiteLLM model string, `"reference"` (plans derived from reference
        solutions), `"reference-givens"` (the same without the values the problem does
        not state), or a list of them (each is a stage-1 source, reported apart).
        `cost_weight`: the RL reward's weight on deployment cost relative to the core
        alone. `exec_samples`: sampled strategies per dev problem for the guide-averaged
        executability of each stage (0: greedy only)."""
        if unknown := set(stages) - set(STAGES):
            raise ConfigError(f"unknown stages {sorted(unknown)}; use some of {', '.join(STAGES)}")
        super().__init__(output_dir)
        self.teacher = teacher
        self.metric = metric
        self.eval_threads = eval_threads  # how, not what: not part of the compile's identity
        self.exec_samples = exec_samples
        reward = reward or RewardWeights(cost_weight=cost_weight)
        self.config = ExecTuneConfig(
            teacher=_source_names(teacher),
            cost_weight=cost_weight, seed=seed, stages=tuple(stages),
            sampling=sampling or SamplingConfig(), sft=sft or SFTStageConfig(seed=seed),
            rl=rl or RLStageConfig(seed=seed), reward=reward,
        )  # fmt: skip
        self.stage_programs: dict[str, GCoP] = {}
        """After `compile`: the program after each stage that ran (the best is returned)."""

    # -- the algorithm --------------------------------------------------------------------
    def compile(
        self,
        student: GCoP,
        trainset: list[dspy.Example] | None = None,
        valset: list[dspy.Example] | None = None,
        *,
        teacher: str | dspy.BaseLM | dspy.Module | None = None,
    ) -> GCoP:
        """Return a new program whose guide is trained for this core; `student` is untouched.

        `teacher` (DSPy's slot for it) replaces the teacher given to `__init__`: an LM, a
        model string, or a program whose guide's LM is used.
        """
        program = student
        metric = self._check(program, trainset, teacher)
        self._claim_output_dir(program)
        self._start_report()
        self._evaluate("core", CoreOnly(program.core), valset, metric)
        self._evaluate("untrained", program, valset, metric)
        compiled = program
        few_shot_program = sft_program = None
        if "sample" in self.config.stages or "sft" in self.config.stages:
            with self._timed("sample"):
                accepted = self.sample(program, trainset, metric)
            few_shot = _few_shot(program.guide, trainset, accepted, seed=self.config.seed)
            few_shot_program = program.with_guide(few_shot)
            self._evaluate("sample", few_shot_program, valset, metric)
            if "sft" in self.config.stages:
                with self._timed("sft"):
                    guide = self.finetune(program.guide, trainset, accepted)
                compiled = sft_program = program.with_guide(guide)
                self._evaluate("sft", compiled, valset, metric)
        rl_program = None
        if "rl" in self.config.stages:
            if compiled is program and self.finished("sft"):  # SFT done in an earlier run
                base, sft_adapter = _local_base(program.guide), self.output_dir / "sft" / "adapter"
                compiled = program.with_guide(_guide_with_adapter(program.guide, base, sft_adapter))
            with self._timed("rl"):
                guide = self.reinforce(compiled, trainset, metric)
            compiled = rl_program = compiled.with_guide(guide)
            self._evaluate("rl", compiled, valset, metric)
        compiled = self._best_on_valset({"untrained": program, "sample": few_shot_program,
                                         "sft": sft_program, "rl": rl_program})  # fmt: skip
        if is_main_process():
            self._write_json("report.json", self.report)
            plot_compile_report(self.report, self.output_dir / "report.png")
        return compiled if compiled is not program else program.with_guide(program.guide)

    def _best_on_valset(self, programs: dict[str, GCoP | None]) -> GCoP:
        """The stage that scored best on the valset (accuracy, then lower cost; a later
        stage wins a full tie), recorded as `best_stage`; the last stage without a valset.
        Every stage's program is kept in `stage_programs`."""
        self.stage_programs = {stage: p for stage, p in programs.items() if p is not None}
        last = next(p for p in reversed(programs.values()) if p is not None)
        dev = self.report.get("dev", {})
        scored = [(stage, p) for stage, p in programs.items() if p is not None and stage in dev]
        if not scored:
            return last
        order = list(programs)

        def key(item: tuple[str, GCoP]) -> tuple[float, float, int]:
            row = dev[item[0]]
            return (row["accuracy"]["estimate"], -row["cost_per_query"]["estimate"],
                    order.index(item[0]))  # fmt: skip

        stage, best = max(scored, key=key)
        self.report["best_stage"] = stage
        if comparison := versus_core(dev, stage):
            self.report["versus_core"] = comparison
            if comparison["verdict"] != "above":
                log.warning("%s", comparison["message"])
        return best

    def sample(self, program: GCoP, trainset, metric: Metric) -> list[Attempt]:
        """Stage 1: teacher strategies that are valid, leak-free and make the core succeed."""
        directory = self.stage("sample").path
        if not self.finished("sample") and self.dist.world_size > 1:
            raise GcopError(
                "stage 1 calls the teacher and core, and would run once per process here; "
                "run it once first (`gcop compile ... --stages sample`), then launch the "
                "training stages (`accelerate launch -m gcop compile ... --stages sft,rl`)"
            )
        if self.finished("sample"):  # read it back
            self.report["stages"]["sample"] = json.loads((directory / "summary.json").read_text())
            lines = (directory / "accepted.jsonl").read_text().splitlines()
            return [Attempt(**json.loads(line)) for line in lines]
        result = sample_strategies(program, trainset, teacher=self.teacher, metric=metric,
                                   config=self.config.sampling, seed=self.config.seed)  # fmt: skip
        write_sampling(result, self.config.sampling, directory)  # cached: a rerun is free
        self.report["stages"]["sample"] = result.summary()
        return result.accepted

    def finetune(self, guide: Guide, trainset, accepted: list[Attempt]) -> Guide:
        """Stage 2: LoRA SFT of the guide on (prompt -> accepted strategy), as it will see it."""
        if not accepted:
            raise GcopError(
                "stage 1 accepted no strategy, so there is nothing to fine-tune on; raise "
                "sampling.candidates, use a stronger teacher, or set show_reference=True"
            )
        examples = sft_examples(guide, trainset, accepted)
        base = _local_base(guide)
        adapter = finetune(base, examples, self.config.sft, self.output_dir / "sft")
        self.report["stages"]["sft"] = {
            "examples": len(examples),
            "log": _log(self.output_dir / "sft"),
        }
        return _guide_with_adapter(guide, base, adapter)

    def reinforce(self, program: GCoP, trainset, metric: Metric) -> Guide:
        """Stage 3: GRPO on the executability reward, from the SFT adapter when there is one."""
        guide = program.guide
        spec = LocalModelSpec.parse(guide.lm.model)
        base, adapter = spec.with_adapter(None).format(), spec.adapter
        directory = self.output_dir / "rl"
        reward = ExecutabilityReward(program, list(trainset), metric, self.config.reward,
                                     log_path=directory / "reward_log.jsonl",
                                     guide_price=_price_per_token(guide.lm.model))  # fmt: skip
        if is_main_process():
            reward.history = _reward_rows_to_keep(directory)
        else:  # each rank scores its own completions; rank 0's rows are the log
            reward.log_path = None
        prompts = [
            {"prompt": guide.format_prompt(**dict(e.inputs())), "example_index": i}
            for i, e in enumerate(trainset)
        ]
        trained = reinforce(base, Path(adapter) if adapter else None, prompts, [reward],
                            self.config.rl, directory)  # fmt: skip
        if reward.history and is_main_process():
            self._write_json("rl/reward_log.json", reward.history)
        self.report["stages"]["rl"] = {"reward": reward.history, "log": _log(directory)}
        return _guide_with_adapter(guide, base, trained)

    # -- checks, resumability, reporting -----------------------------------------------
    def _check(self, program: GCoP, trainset, teacher) -> Metric:
        if not isinstance(program, GCoP):
            raise TypeError(f"ExecTune compiles a GCoP program, not {type(program).__name__}")
        if self.metric is None:
            raise GcopError("ExecTune needs metric=...: e.g. ExecTune(teacher, metric=task.metric)")
        if trainset is None:
            raise GcopError("ExecTune.compile needs trainset=[dspy.Example, ...]")
        if teacher is not None:  # DSPy passes the teacher to compile
            self.teacher = _teacher_lm(teacher)
            self.config.teacher = _source_names(self.teacher)
        if self.teacher is None:
            raise GcopError(
                "ExecTune needs a teacher: ExecTune(teacher='provider/model', ...) or "
                "compile(..., teacher=...)"
            )
        check_strategy_type(program.guide.strategy_type)
        check_examples(trainset, program.guide.strategy_type.task_inputs())
        sources = self.teacher if isinstance(self.teacher, list | tuple) else [self.teacher]
        teachers = [s if isinstance(s, dspy.BaseLM) else GcopLM(s)
                    for s in sources if s not in self.model_free_sources]  # fmt: skip
        for lm in (*teachers, program.core.lm):
            check_credentials(lm)
        if {"sft", "rl"} & set(self.config.stages):
            _local_base(program.guide)
        return self.metric

    def _claim_output_dir(self, program: GCoP) -> None:
        """Refuse to resume into a directory made by a different configuration."""
        config = _jsonable(asdict(self.config))
        config.pop("stages")  # running more stages later continues the same compile
        for (section, name), default in LATER_OPTIONS.items():
            if config[section].get(name) == default:
                del config[section][name]
        identity = {
            "config": config,
            "guide": program.guide.lm.model,
            "core": program.core.lm.model,
            "strategy_type": f"{program.guide.strategy_type.__module__}."
            f"{program.guide.strategy_type.__qualname__}",
        }
        path = self.output_dir / "config.json"
        if path.exists():
            saved = json.loads(path.read_text())
            if _without_speed(saved) != _without_speed(portable(identity, self.output_dir)):
                raise OutputDirConflictError(
                    f"{self.output_dir} holds a compile with a different configuration; "
                    "use another output_dir, or delete it to start over"
                )
        elif is_main_process():
            self._write_json("config.json", identity)

    def _start_report(self) -> None:
        """Begin the report, keeping the wall times of work an earlier run already did."""
        path = self.output_dir / "report.json"
        earlier = json.loads(path.read_text()).get("wall_seconds", {}) if path.exists() else {}
        self.report = {"stages": {}, "wall_seconds": earlier}

    @contextmanager
    def _timed(self, key: str) -> Iterator[None]:
        """Record the wall time of `key` the first time it runs (a resumed run's skip of
        finished work takes no time and must not overwrite it); save the report so far."""
        start = time.perf_counter()
        log.info("%s: started", key)
        yield
        log.info("%s: done in %.0f s", key, time.perf_counter() - start)
        self.report["wall_seconds"].setdefault(key, round(time.perf_counter() - start, 1))
        if is_main_process():
            self._write_json("report.json", self.report)

    def _evaluate(self, stage: str, program: dspy.Module, valset, metric: Metric) -> None:
        if not valset or not is_main_process():  # one rank evaluates; the others go on
            return
        with self._timed(f"dev:{stage}"):  # saves the report, this row included
            report: Report = evaluate(program, valset, metric, system=stage,
                                      num_threads=self.eval_threads)  # fmt: skip
            sampled = None
            if self.exec_samples > 0 and isinstance(program, GCoP):
                sampled = evaluate(program, valset, metric, system=stage,
                                   samples=self.exec_samples,
                                   num_threads=self.eval_threads)  # fmt: skip
            self.report.setdefault("dev", {})[stage] = {
                "guide_averaged_executability": (
                    {**asdict(sampled.executability), "samples": self.exec_samples}
                    if sampled and sampled.executability
                    else None
                ),
                "utility": {str(lam): report.utility(lam) for lam in UTILITY_LAMBDAS},
                "accuracy": asdict(report.accuracy),
                "executability": asdict(report.executability) if report.executability else None,
                "cost_per_query": asdict(report.cost_per_query),
                "n": report.n,
                "valid_rate": asdict(report.valid_rate) if report.valid_rate else None,
                # why strategies failed (unparseable, leak, ...): the first thing to look at
                "verdicts": dict(Counter(o.verdict for o in report.outcomes if o.verdict)),
            }
            self.report["ledger"] = default_cache().ledger.as_dict()
        if isinstance(program, GCoP):
            _release_trained_guide(program.guide)

    def _write_json(self, name: str, data: Any) -> None:
        """Paths inside the run folder are written relative to it (reports move machines)."""
        write_json(self.output_dir / name, portable(data, self.output_dir))


def demo_block(accepted: list[Attempt], shots: int, seed: int) -> list[Attempt]:
    """The `seed`-th block of `shots` accepted strategies, in training-set order.

    Seeds take disjoint blocks (wrapping round a short list), so a seed ablation of the AS
    stage compares independent demonstration sets, and seed 0 is the first `shots`.
    """
    if not accepted:
        return []
    start = (seed * shots) % len(accepted)
    return (accepted[start:] + accepted[:start])[: min(shots, len(accepted))]


def sft_examples(guide: Guide, trainset, accepted: list[Attempt]) -> list[dict[str, Any]]:
    """Stage 2's training rows: the guide's inference prompt for each accepted strategy's
    problem, with the strategy (parsed, so in its canonical form) as the reply."""
    by_id = examples_by_key(trainset)
    return [
        guide.format_training_example(
            guide.strategy_type.parse(a.strategy), **dict(by_id[a.example_id].inputs())
        )
        for a in accepted
    ]


def _few_shot(
    guide: Guide, trainset, accepted: list[Attempt], shots: int = 3, seed: int = 0
) -> Guide:
    """The untrained guide with a seed's block of accepted strategies as demonstrations
    (none accepted: no demos)."""
    by_id = examples_by_key(trainset)
    demos = [
        dspy.Example(**dict(by_id[a.example_id].inputs()),
                     strategy=guide.strategy_type.parse(a.strategy))
        for a in demo_block(accepted, shots, seed)
    ]  # fmt: skip
    few_shot = Guide(guide.strategy_type, guide.lm, adapter=guide.adapter_name)
    few_shot.predict.demos = demos
    return few_shot


def core_with_guide_demos(
    program: GCoP, trainset: list[dspy.Example], core_demo: Callable[[dspy.Example], dspy.Example]
) -> CoreOnly:
    """The core alone, shown as worked solutions (`Task.core_demo`) the training problems
    that `program`'s guide is shown as demos: the control for a few-shot guide. On GSM8K
    test it matched the AS-stage guide (docs/benchmarks.md, issue 12): a gain over the
    zero-shot core may be the demonstrations, not the plans."""
    core = program.core
    names = list(core.task.input_fields)  # a demo is matched to its problem by its inputs
    by_inputs = {tuple(e.get(n) for n in names): e for e in trainset}
    shown = [by_inputs[tuple(d.get(n) for n in names)] for d in program.guide.predict.demos]
    control = Core(core.lm, task=core.task, adapter=core.adapter_name)
    control.alone.demos = [core_demo(example) for example in shown]
    return CoreOnly(control)


def _without_speed(identity: dict[str, Any]) -> dict[str, Any]:
    """A compile identity without the options that change how fast (or in how much memory)
    it runs, not what it computes (:func:`gcop.checks.speed_options`; every call is cached
    by its content): a resumed run may change them."""
    config = without_speed_options(identity.get("config", {}), ExecTune.config_types)
    return {**identity, "config": config}


def _source_names(teacher) -> str | list[str] | None:
    """The teacher (or list of strategy sources) as JSON-able names, for the identity."""
    if isinstance(teacher, list | tuple):
        return [_source_names(t) for t in teacher]
    return teacher if isinstance(teacher, str) or teacher is None else teacher.model


def _price_per_token(model: str) -> tuple[float, float]:
    """(input, output) dollars per token of the guide: a local guide at the price its size
    gives it, read from the checkpoint (the trainer holds the model: no second copy is
    loaded for a price); an API model as LiteLLM prices it (0 when it does not)."""
    import litellm

    from gcop.local import price_per_token

    if model.startswith("local/"):
        return price_per_token(model)
    # LiteLLM's map names most models without their provider; unpriced: 0, and the reward
    # then charges the core's cost alone (get_model_info would print a banner to stdout)
    entry = litellm.model_cost.get(model) or litellm.model_cost.get(model.split("/", 1)[-1], {})
    return entry.get("input_cost_per_token") or 0.0, entry.get("output_cost_per_token") or 0.0


def _teacher_lm(teacher: str | dspy.BaseLM | list | dspy.Module) -> str | dspy.BaseLM | list:
    """DSPy's `teacher` is a program; ours is the LM that writes strategies (or a list of
    strategy sources, as `__init__` takes)."""
    if isinstance(teacher, str | dspy.BaseLM | list | tuple):
        return teacher
    guide = getattr(teacher, "guide", teacher)
    if isinstance(getattr(guide, "lm", None), dspy.BaseLM):
        return guide.lm
    raise TypeError(
        f"teacher={type(teacher).__name__}: pass a model string, a dspy LM, or a GCoP/Guide "
        "whose guide LM writes the candidate strategies"
    )


def _reward_rows_to_keep(rl_dir: Path) -> list[dict[str, Any]]:
    """Reward rows an earlier RL run logged, minus those of steps a resume will redo.

    A finished stage keeps every row; a killed one keeps the rows up to the checkpoint it
    resumes from (the steps after it are trained, and logged, again); a fresh one none.
    The log is rewritten to exactly those rows before training appends to it.
    """
    log = rl_dir / "reward_log.jsonl"
    rows = []
    for line in log.read_text().splitlines() if log.exists() else []:
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # the last line of a killed run may be cut off
            continue
    if not StageDir(rl_dir, ADAPTER).done:
        checkpoint = last_checkpoint(rl_dir)
        resumed_step = int(checkpoint.rsplit("-", 1)[-1]) if checkpoint else 0
        rows = [row for row in rows if row.get("step", 0) <= resumed_step]
        write_text(log, "".join(json.dumps(row) + "\n" for row in rows))
    return rows


def _local_base(guide: Guide) -> str:
    model = guide.lm.model
    if not model.startswith("local/"):
        raise GcopError(
            f"the guide {model!r} is not a local model, so it cannot be fine-tuned; "
            "use a local/<name-or-path> guide (e.g. local/smollm2-135m-instruct)"
        )
    return LocalModelSpec.parse(model).with_adapter(None).format()


def _release_trained_guide(guide: Guide) -> None:
    """Free the serving copy of a trained guide once its stage is scored: the next stage
    would otherwise train beside it (a merged fp32 1.5B guide holds 7 GB). Only adapters are
    released: the untrained base may be the core too. A later call loads it again."""
    from gcop.local import MODELS

    model = guide.lm.model
    if model.startswith("local/") and LocalModelSpec.parse(model).adapter:
        MODELS.unload(model)


def _guide_with_adapter(guide: Guide, base: str, adapter: Path) -> Guide:
    lm = guide.lm
    return Guide(guide.strategy_type, LocalModelSpec.parse(base).with_adapter(adapter).format(),
                 temperature=lm.kwargs.get("temperature", 0.0),
                 max_tokens=lm.kwargs.get("max_tokens", 256),
                 adapter=guide.adapter_name)  # fmt: skip


def versus_core(dev: dict[str, Any], stage: str) -> dict[str, Any] | None:
    """The chosen stage against the core alone on the valset: `above`, `level` or `below`
    in accuracy, with the cost ratio and a sentence for the user. The stage choice is among
    guided programs only (a compile returns a GCoP), so when no stage beats the core alone
    this is where the user learns that, for this core, the core alone is the better
    program. None without a core row."""
    if "core" not in dev or stage not in dev:
        return None
    core, best = dev["core"], dev[stage]
    core_acc, best_acc = core["accuracy"]["estimate"], best["accuracy"]["estimate"]
    core_cost, best_cost = core["cost_per_query"]["estimate"], best["cost_per_query"]["estimate"]
    verdict = "above" if best_acc > core_acc else "level" if best_acc == core_acc else "below"
    ratio = best_cost / core_cost if core_cost else None
    cost = f" at {ratio:.2f}x its cost" if ratio is not None else ""
    where = f"on the valset (n={best['n']})"
    message = {
        "above": f"the best stage, {stage}, scores above the core alone {where}: "
                 f"{best_acc:.3f} against {core_acc:.3f}{cost} (a point estimate: for a test, "
                 "score both on more problems with gcop bench --program)",
        "level": f"no stage beat the core alone {where}: the best, {stage}, ties it "
                 f"at {best_acc:.3f}{cost}",
        "below": f"no stage beat the core alone {where}: the best, {stage}, scores "
                 f"{best_acc:.3f} against {core_acc:.3f}{cost}; for this core the core "
                 "alone (gcop.CoreOnly) is the better program",
    }[verdict]  # fmt: skip
    return {"stage": stage, "verdict": verdict, "accuracy": best_acc, "core_accuracy": core_acc,
            "cost_ratio": ratio, "n": best["n"], "message": message}  # fmt: skip


def _log(directory: Path) -> list[dict]:
    path = directory / "train_log.json"
    return json.loads(path.read_text()) if path.exists() else []


def _jsonable(data: Any) -> Any:
    return json.loads(json.dumps(data, default=str))
