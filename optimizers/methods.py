"""The methods `gcop experiment` compares, each registered in `gcop.registry.methods`.

Every method builds the program one cell scores, on the cell's core, with the task's token
budgets and the same prompt adapter (the default), from the same training problems and
teacher:

- `core`, `core-cot`: the core alone, and with DSPy's `ChainOfThought` signature (a
  `reasoning` output field before the answer; where the task already has one, its wording);
- `bootstrap-fewshot`, `mipro-light`: DSPy's `BootstrapFewShot` and `MIPROv2(auto="light")`
  applied to the core alone, bootstrapping from the teacher LLM (the core itself when the
  teacher is only `"reference"`); MIPROv2 also proposes instructions with that model; both
  read the training problems as worked solutions where the task has them;
- `core-demos`: the core alone shown, as worked solutions (`Task.core_demo`), the
  training problems ExecTune's AS stage shows its guide: the control for a few-shot guide
  (its gain over the zero-shot core may be the demonstrations, not the plans);
- `gcop-base`, `gcop-fewshot`: the untrained guide, zero-shot and with three teacher
  strategies as demonstrations (unfiltered: any that parse);
- `gcop-supervised`: LoRA SFT on every teacher strategy that parses, with no acceptance
  filter (`SamplingConfig(accept="parsed")`);
- `gcop-advisor`: GRPO from the base guide on the task reward alone
  (`RewardWeights(task_only=True)`: no format, leak or cost terms);
- `exectune-as`, `exectune-sft`, `exectune-rl`: ExecTune after each stage; `exectune`: the
  stage ExecTune picks on the dev set;
- `transfer`, `retune`: a guide ExecTune compiled for another core, moved as it is, or
  after RL on the new core from its adapter (the grid's `[[transfer]]` entries).

Methods that train share compiles: one ExecTune folder per (kind, core, seed) under the
experiment's `compiles/`, resumed like any compile, so `exectune-as`, `-sft` and `-rl` are
the stages of one run and every model call is cached.
"""

from __future__ import annotations

import contextlib
import io
import logging
import random
from typing import Any

import dspy

from gcop.calls import default_cache
from gcop.errors import ConfigError
from gcop.experiment import Method, MethodContext
from gcop.optimizers.exectune import ExecTune, core_with_guide_demos
from gcop.optimizers.reward import RewardWeights
from gcop.optimizers.rl import RLStageConfig
from gcop.optimizers.sampling import REFERENCE_SOURCES, SamplingConfig
from gcop.optimizers.sft import SFTStageConfig
from gcop.program import Core, CoreOnly, GCoP, Guide
from gcop.registry import register_method, register_stage_table
from gcop.task import Task

log = logging.getLogger(__name__)
STAGES = ("sample", "sft", "rl")


# -- building blocks ----------------------------------------------------------------------


def core_module(context: MethodContext, core: str | None = None, task=None) -> Core:
    task_signature = task or context.task.signature
    return Core(core or context.core, task=task_signature,
                max_tokens=context.task.core_max_tokens)  # fmt: skip


def guide_module(context: MethodContext) -> Guide:
    return Guide(context.task.strategy_type, context.config.guide,
                 max_tokens=context.task.guide_max_tokens)  # fmt: skip


def chain_of_thought(signature: type[dspy.Signature]) -> type[dspy.Signature]:
    """The signature `dspy.ChainOfThought` predicts with: a `reasoning` output field first.
    A task that already reasons gets DSPy's reasoning field in place of its own."""
    if "reasoning" in signature.output_fields:
        signature = signature.delete("reasoning")
    return dspy.ChainOfThought(signature).predict.signature


def core_alone(context: MethodContext) -> CoreOnly:
    """The student DSPy's optimizers tune: the core alone, holding only the predictor it
    calls (MIPROv2 searches instructions and demos for every named predictor, and the
    guided one never runs without a guide)."""
    student = CoreOnly(core_module(context))
    student.core.guided = None
    return student


def llm_teacher(context: MethodContext) -> str | None:
    """The first LLM among the teachers (None when the only source is `"reference"`)."""
    return next((t for t in context.config.teachers if t not in REFERENCE_SOURCES), None)


def teacher_lm(context: MethodContext, student: CoreOnly) -> dspy.BaseLM:
    """The LM DSPy's optimizers bootstrap demos with: the teacher LLM, else the core."""
    teacher = llm_teacher(context)
    return core_module(context, teacher).lm if teacher else student.core.lm


def on_core(program: dspy.Module, lm: dspy.BaseLM) -> dspy.Module:
    """DSPy's optimizers return `reset_copy()`s, whose predictors lost their LM: give every
    predictor the core's LM back (the optimized demos and instructions stay)."""
    for _, predictor in program.named_predictors():
        predictor.lm = lm
    return program


def shuffled(examples: list[dspy.Example], seed: int) -> list[dspy.Example]:
    """The training problems in a seed's order (what varies DSPy's optimizers over seeds)."""
    examples = list(examples)
    random.Random(seed).shuffle(examples)
    return examples


def dspy_trainset(context: MethodContext) -> list[dspy.Example]:
    """The training problems DSPy's optimizers learn from, in the seed's order, written as
    worked solutions where the task has them (`Task.core_demo`): a labelled demo then shows
    the working as well as the answer, as the bootstrapped ones do. A demo with the answer
    alone is one the plain adapter leaves out (`PlainAdapter.format_demos`)."""
    return worked_in_order(context.task, context.trainset, context.seed)


def worked_in_order(task: Task, examples: list[dspy.Example], seed: int) -> list[dspy.Example]:
    """`examples` in the seed's order, as worked solutions where the task has them.

    Each keeps the training example's other fields (a code problem's tests): DSPy's
    optimizers score their bootstrapped candidates with the metric on these very examples,
    and on code's bare demos every candidate failed for want of tests (BootstrapFewShot
    kept no demo of its own). A prompt shows only the signature's fields."""
    examples = shuffled(examples, seed)
    if task.core_demo is None:
        return examples
    return [example.copy(**task.core_demo(example)) for example in examples]


@contextlib.contextmanager
def quiet() -> Any:
    """DSPy's optimizers print progress (tqdm, print): keep it out of the progress lines."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
        yield
    log.debug(buffer.getvalue())


def compiled(
    context: MethodContext, kind: str, stages: tuple[str, ...], *, core: str | None = None,
    program: GCoP | None = None, valset: bool = False,
) -> ExecTune:  # fmt: skip
    """The ExecTune run of `kind` ("exectune", "supervised", "advisor", "retune-...") for
    this core and seed, compiled (or read back) up to `stages`; one per run and key."""
    core = core or context.core
    key = (kind, core, context.seed, stages)
    if key in context.memo:
        return context.memo[key]
    options = context.stage_options
    sampling, reward = dict(options.get("sampling", {})), dict(options.get("reward", {}))
    if kind == "supervised":  # no acceptance filter
        sampling["accept"] = "parsed"
    if kind == "advisor":  # the task reward alone
        reward["task_only"] = True
    rl = {"seed": context.seed, "max_completion_length": context.task.guide_max_tokens,
          **options.get("rl", {})}  # fmt: skip
    reward_weights = RewardWeights(**reward)
    output_dir = context.compile_dir(kind, core)
    tuner = ExecTune(
        context.config.teachers, context.task.metric, stages=stages,
        sampling=SamplingConfig(**sampling),
        sft=SFTStageConfig(**{"seed": context.seed, **options.get("sft", {})}),
        rl=RLStageConfig(**rl), reward=reward_weights, cost_weight=reward_weights.cost_weight,
        output_dir=output_dir, seed=context.seed, eval_threads=context.config.threads,
        exec_samples=0,
    )  # fmt: skip
    program = program or GCoP(guide_module(context), core_module(context, core))
    to_run = [stage for stage in stages if not tuner.finished(stage)]
    finished = not to_run
    context.log(f"compile {kind} for {core}, seed {context.seed}, stages {','.join(stages)}"
                + (" (read back)" if finished else f" -> {output_dir}"))  # fmt: skip
    ledger = default_cache().ledger
    before = _nominal_cost(ledger)
    tuner.compile(program, context.trainset, context.devset if valset else None)
    tuner.nominal_cost = None if finished else _nominal_cost(ledger) - before
    if to_run:
        # A compile runs in the first cell that needs it and is read back by the others
        # (gcop-fewshot's demos come from the supervised compile): the cell says so, so
        # that its build time is not read as its method's own cost.
        timed = tuner.report.get("wall_seconds", {})
        context.notes.setdefault("compiled", []).append({
            "kind": kind, "core": core, "stages": to_run,
            "wall_seconds": {stage: timed.get(stage) for stage in to_run},
        })  # fmt: skip
    context.memo[key] = tuner
    return tuner


def _nominal_cost(ledger) -> float:
    """Dollars of every call so far, cached or not (a cached call costs what it did)."""
    return sum(t["cost_spent"] + t["cost_saved"] for t in ledger.as_dict().values())


def exectune_stages(context: MethodContext, at_least: str = "sample") -> tuple[str, ...]:
    """The ExecTune stages this grid needs on any core: up to the latest stage any method
    or transfer reads, so that every cell reads the same compile."""
    wanted = {"exectune-as": "sample", "exectune-sft": "sft", "exectune-rl": "rl",
              "exectune": "rl"}  # fmt: skip
    latest = [wanted[m] for m in context.config.methods if m in wanted]
    latest += [t.stage for t in context.config.transfer] + [at_least]
    return STAGES[: max(STAGES.index(s) for s in latest) + 1]


def exectune_stage(context: MethodContext, stage: str, core: str | None = None) -> GCoP:
    valset = "exectune" in context.config.methods  # the best stage is picked on dev
    stages = exectune_stages(context, stage if stage in STAGES else "sample")
    tuner = compiled(context, "exectune", stages, core=core, valset=valset)
    if stage == "best":
        return tuner.stage_programs[tuner.report.get("best_stage", stages[-1])]
    return tuner.stage_programs[stage]


# -- the methods --------------------------------------------------------------------------


def bootstrap_fewshot(context: MethodContext) -> dspy.Module:
    student = core_alone(context)
    optimizer = dspy.BootstrapFewShot(
        metric=context.task.metric, max_bootstrapped_demos=4, max_labeled_demos=4,
        teacher_settings={"lm": teacher_lm(context, student)},
    )  # fmt: skip
    with quiet(), dspy.context(lm=student.core.lm, adapter=student.core.adapter):
        compiled_program = optimizer.compile(student, trainset=dspy_trainset(context))
    return on_core(compiled_program, student.core.lm)


def mipro_light(context: MethodContext) -> dspy.Module:
    """MIPROv2 as DSPy runs it, with one choice made for small models: its own prompts (the
    dataset summary, the program description, the instruction proposals) go through the
    core's adapter too. gcop's `plain` adapter reads a reply to them as free text, where
    DSPy's ChatAdapter fails the whole compile when the proposer misses a field marker."""
    try:
        import optuna  # noqa: F401  (MIPROv2's search; not a gcop dependency by default)
    except ImportError:
        raise ConfigError(
            "mipro-light needs optuna: pip install 'exectune[experiment]' (or optuna)"
        ) from None
    student = core_alone(context)
    teacher = teacher_lm(context, student)
    optimizer = dspy.MIPROv2(metric=context.task.metric, prompt_model=teacher,
                             task_model=student.core.lm, teacher_settings={"lm": teacher},
                             auto="light", seed=context.seed,
                             num_threads=context.config.threads, verbose=False)  # fmt: skip
    with quiet(), dspy.context(lm=student.core.lm, adapter=student.core.adapter):
        compiled_program = optimizer.compile(student,
                                             trainset=dspy_trainset(context),
                                             valset=context.devset or None)  # fmt: skip
    return on_core(compiled_program, student.core.lm)


def core_demos(context: MethodContext) -> CoreOnly:
    if context.task.core_demo is None:
        raise ConfigError(
            f"core-demos: task {context.task.name!r} has no worked solutions to show the core "
            "(Task.core_demo); leave the method out of this grid"
        )
    as_stage = exectune_stage(context, "sample")
    return core_with_guide_demos(as_stage, context.trainset, context.task.core_demo)


def supervised(context: MethodContext, stage: str) -> GCoP:
    stages = ("sample", "sft") if "gcop-supervised" in context.config.methods else ("sample",)
    return compiled(context, "supervised", stages).stage_programs[stage]


def transfer(context: MethodContext) -> GCoP:
    """The guide compiled for the source core, with this cell's (target) core."""
    spec = context.transfer
    moved = exectune_stage(context, spec.stage, core=spec.source)
    return GCoP(moved.guide, core_module(context))


def retune(context: MethodContext) -> GCoP:
    """RL on the target core, starting from the adapter compiled for the source core; the
    cell notes what re-tuning cost beside what the source's compile cost."""
    spec = context.transfer
    moved = transfer(context)
    source = compiled(context, "exectune", exectune_stages(context, spec.stage), core=spec.source)
    kind = f"retune-{spec.stage}-from-{_short(spec.source)}"
    tuner = compiled(context, kind, ("rl",), program=moved)
    context.notes["retune"] = {
        "wall_seconds": tuner.report.get("wall_seconds", {}).get("rl"),
        "nominal_dollars": tuner.nominal_cost,
        "source_compile_wall_seconds": sum(
            source.report.get("wall_seconds", {}).get(s, 0.0) for s in STAGES
        ),
        "source_compile_nominal_dollars": source.nominal_cost,
    }
    return tuner.stage_programs["rl"]


def _short(model: str) -> str:
    from gcop.experiment import slug

    return slug(model)[-40:]


METHODS = [
    Method("core", "the core alone", lambda c: CoreOnly(core_module(c))),
    Method("core-cot", "the core alone, DSPy's ChainOfThought signature",
           lambda c: CoreOnly(core_module(c, task=chain_of_thought(c.task.signature)))),
    Method("bootstrap-fewshot", "DSPy BootstrapFewShot on the core alone", bootstrap_fewshot),
    Method("mipro-light", "DSPy MIPROv2 (auto='light') on the core alone", mipro_light),
    Method("core-demos", "the core alone, shown the AS stage's demo problems as worked "
           "solutions", core_demos),
    Method("gcop-base", "untrained guide, zero-shot", lambda c: GCoP(guide_module(c),
           core_module(c)), guided=True),
    Method("gcop-fewshot", "untrained guide, 3 unfiltered teacher strategies as demos",
           lambda c: supervised(c, "sample"), guided=True),
    Method("gcop-supervised", "SFT on every parsed teacher strategy (no acceptance filter)",
           lambda c: supervised(c, "sft"), guided=True),
    Method("gcop-advisor", "GRPO on the task reward only, from the base guide",
           lambda c: compiled(c, "advisor", ("rl",)).stage_programs["rl"], guided=True),
    Method("exectune-as", "ExecTune stage 1: accepted strategies as demos",
           lambda c: exectune_stage(c, "sample"), baseline=False, guided=True),
    Method("exectune-sft", "ExecTune stages 1-2: LoRA SFT on accepted strategies",
           lambda c: exectune_stage(c, "sft"), baseline=False, guided=True),
    Method("exectune-rl", "ExecTune stages 1-3: + executability GRPO",
           lambda c: exectune_stage(c, "rl"), baseline=False, guided=True),
    Method("exectune", "ExecTune: the stage picked on the dev set",
           lambda c: exectune_stage(c, "best"), baseline=False, guided=True),
    Method("transfer", "a guide compiled for another core, as it is", transfer,
           baseline=False, guided=True),
    Method("retune", "a guide compiled for another core, after RL on this one", retune,
           baseline=False, guided=True),
]  # fmt: skip
for _method in METHODS:
    register_method(_method)
for _table, _options in (("sampling", SamplingConfig), ("sft", SFTStageConfig),
                         ("rl", RLStageConfig), ("reward", RewardWeights)):  # fmt: skip
    register_stage_table(_table, _options)
