"""The headline experiment: does an ExecTune-compiled guide beat its core alone, on held-out
problems, significantly? With the stage ablation over seeds, and the ceiling.

    python benchmarks/headline.py --task gsm8k --core local/qwen2.5-coder-1.5b-instruct \
        --guide local/smollm2-135m-instruct --teacher reference --train 400 --dev 50 \
        --test 300 --seeds 0,1,2 --out runs/headline

On the test partition (a fixed seeded sample, the same problems for every system and seed):
- the core alone (its best prompt format, the same for every system),
- the ceiling: the core following plans derived from each problem's reference solution,
- the untrained guide + core,
- per seed, the core alone shown the AS stage's demo problems as worked solutions (the
  control for the AS stage: is its gain the plans or the demonstrations?),
- per training seed, ExecTune's stages: AS (accepted strategies as few-shot demos),
  AS+SFT, AS+SFT+RL, and the stage `compile` picked on the dev set ("ExecTune").
Accuracy with 95% Wilson intervals, mean and std over seeds, exact McNemar p-values per seed
and a paired bootstrap over problems and seeds against the core alone and between adjacent
stages, guide-averaged executability, cost per query. Every model call goes through the
call cache and each compile resumes from its output folder, so a rerun is cheap and a killed
run continues. Writes `--results` (JSON) and a PNG beside it.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import statistics
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from gcop.atomic import write_json  # noqa: E402
from gcop.bench import select_examples  # noqa: E402
from gcop.metrics import Report, evaluate, wilson  # noqa: E402
from gcop.optimizers.exectune import ExecTune, core_with_guide_demos  # noqa: E402
from gcop.optimizers.rl import RLStageConfig  # noqa: E402
from gcop.optimizers.sampling import SamplingConfig  # noqa: E402
from gcop.optimizers.sft import SFTStageConfig  # noqa: E402
from gcop.program import Core, CoreOnly, GCoP, Guide  # noqa: E402
from gcop.programs import get_task  # noqa: E402
from gcop.stats import discordant, mcnemar_exact, paired_bootstrap  # noqa: E402

STAGE_NAMES = {"sample": "AS", "sft": "AS+SFT", "rl": "AS+SFT+RL"}
CORE_DEMOS = "core alone + AS demos"
"""The core alone shown, as worked solutions, the problems the AS stage's guide is shown."""
SYSTEMS = ("ceiling", "untrained", "core-demos", *STAGE_NAMES.values())
"""Systems `--systems` may choose (the core alone and ExecTune's pick always run)."""


class ReferencePlans(GCoP):
    """The ceiling: a "guide" that reads the plan off the reference solution."""

    def forward(self, **inputs: Any):
        import dspy

        from gcop.program import usage_summary
        from gcop.strategy import Validity, Verdict

        example = dspy.Example(**inputs, **self.references[inputs["question"]])
        plan = self.guide.strategy_type.from_reference(example)
        validity = plan.check(example) if plan else Validity(Verdict.UNPARSEABLE, "none")
        text = plan.render() if validity.ok else None
        result = self.core(**inputs, strategy=text)
        return dspy.Prediction(
            **{k: v for k, v in result.items() if k != "usage"}, strategy=plan,
            strategy_text=text, validity=validity, guide_usage=usage_summary([]),
            core_usage=result.usage,
        )  # fmt: skip


def row(report: Report) -> dict[str, Any]:
    scores = {o.example_id: o.score for o in report.outcomes if o.sample == 0}
    return {
        "accuracy": vars(report.accuracy),
        "executability": vars(report.executability) if report.executability else None,
        "valid_rate": vars(report.valid_rate) if report.valid_rate else None,
        "cost_per_query": vars(report.cost_per_query),
        "n": report.n,
        "failed_calls": report.failed_calls,
        "scores": scores,
        "verdicts": {
            o.example_id: o.verdict
            for o in report.outcomes
            if o.sample == 0 and o.verdict is not None
        },
    }


def by_plan_answer(alone: dict[str, Any], guided: dict[str, Any], ids: list[str]) -> dict:
    """`guided` vs `alone` apart on the problems whose plan states the gold answer (the
    evaluation's leak verdict) and on the rest. Deployment cannot reject such a plan (it
    has no gold answer), so the core reads it. The split follows the guide's own success,
    so it describes where the gain falls, not what causes it; the controlled test is to
    hide the guide's computed values (`GCoP(hide_computed_values=True)`)."""
    parts = {"plan_states_answer": [], "plan_does_not": []}
    for i in ids:
        leaks = guided.get("verdicts", {}).get(i) == "leak"
        parts["plan_states_answer" if leaks else "plan_does_not"].append(i)
    out = {}
    for name, part in parts.items():
        old = [alone["scores"].get(i, 0.0) for i in part]
        new = [guided["scores"].get(i, 0.0) for i in part]
        gained, lost = discordant(old, new)
        out[name] = {"n": len(part), "correct_alone": sum(x > 0 for x in old),
                     "correct_guided": sum(x > 0 for x in new), "gained": gained,
                     "lost": lost, "p_value": mcnemar_exact(gained, lost)}  # fmt: skip
    return out


def compare(old: list[dict], new: list[dict], ids: list[str]) -> dict[str, Any]:
    """`new` vs `old` (one row per seed; a single row is reused for every seed)."""
    seeds = max(len(old), len(new))
    old_rows = [[(old[s % len(old)]["scores"].get(i, 0.0)) for i in ids] for s in range(seeds)]
    new_rows = [[(new[s % len(new)]["scores"].get(i, 0.0)) for i in ids] for s in range(seeds)]
    per_seed = []
    for a, b in zip(old_rows, new_rows, strict=True):
        gained, lost = discordant(a, b)
        per_seed.append({"gained": gained, "lost": lost, "p_value": mcnemar_exact(gained, lost)})
    bootstrap = paired_bootstrap(old_rows, new_rows)
    return {"mcnemar": per_seed, "bootstrap": vars(bootstrap)}


def summary(rows: list[dict]) -> dict[str, float]:
    accs = [r["accuracy"]["estimate"] for r in rows]
    return {
        "mean": statistics.fmean(accs),
        "std": statistics.pstdev(accs) if len(accs) > 1 else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--task", default="gsm8k")
    add("--core", default="local/qwen2.5-coder-1.5b-instruct")
    add("--guide", default="local/smollm2-135m-instruct")
    add("--teacher", default="reference", help="comma-separated stage-1 sources")
    add("--candidates", type=int, default=4, help="samples per example from each LLM teacher")
    add("--train", type=int, default=400)
    add("--dev", type=int, default=50)
    add("--test", type=int, default=300)
    add("--seeds", default="0,1,2")
    add("--sft-epochs", type=int, default=3)
    add("--stages", default="sample,sft,rl", help="ExecTune stages to run (comma-separated)")
    add("--rl-steps", type=int, default=50, help="0 skips the RL stage")
    add("--rl-batch-size", type=int, default=8)
    add("--exec-samples", type=int, default=4)
    add("--threads", type=int, default=32)
    add("--sampling-threads", type=int, default=16, help="concurrent stage-1 candidates")
    add(
        "--systems",
        default=",".join(SYSTEMS),
        help="comma-separated subset of: " + ", ".join(SYSTEMS) + " (ExecTune always runs)",
    )
    add("--larger-core", help="also run this core alone on test (the cost comparison)")
    add("--out", type=Path, default=Path("runs/headline"))
    add("--results", type=Path, default=Path("docs/results/headline.json"))
    add(
        "--program-out",
        type=Path,
        help="where the first seed's compiled program is saved, for `gcop bench --program` "
        "(default: beside --results, named <results>-program)",
    )
    args = parser.parse_args()
    args.program_out = args.program_out or args.results.with_name(f"{args.results.stem}-program")

    task = get_task(args.task)
    wanted = {s.strip() for s in args.systems.split(",")}
    if unknown := wanted - set(SYSTEMS):
        parser.error(f"--systems: unknown {sorted(unknown)}; choose from {', '.join(SYSTEMS)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    teachers = [t.strip() for t in args.teacher.split(",")]
    train = select_examples(task, "train", args.train, 0)
    dev = select_examples(task, "dev", args.dev, 0)
    test = select_examples(task, "test", args.test, 0)
    ids = [str(e.id) for e in test]
    core = Core(args.core, task=task.signature, max_tokens=task.core_max_tokens)
    guide = Guide(task.strategy_type, args.guide, max_tokens=task.guide_max_tokens)
    program = GCoP(guide, core)

    def run(name: str, system, samples: int = 1) -> dict[str, Any]:
        print(f"[headline] {name}: {len(test)} test problems", flush=True)
        result = row(evaluate(system, test, task.metric, system=name, num_threads=args.threads))
        if samples > 1 and isinstance(system, GCoP):
            sampled = evaluate(system, test, task.metric, samples=samples,
                               num_threads=args.threads)  # fmt: skip
            result["guide_averaged_executability"] = vars(sampled.executability)
        acc = result["accuracy"]
        print(f"[headline] {name}: accuracy {acc['estimate']:.3f} "
              f"[{acc['low']:.3f}, {acc['high']:.3f}]", flush=True)  # fmt: skip
        return result

    systems: dict[str, list[dict]] = {"core alone": [run("core alone", CoreOnly(core))]}
    if "ceiling" in wanted:
        ceiling = ReferencePlans(guide, core)
        ceiling.references = {e.question: {"answer": e.answer, "solution": e.solution}
                              for e in test}  # fmt: skip
        systems["ceiling (reference plans)"] = [run("ceiling", ceiling)]
    if "untrained" in wanted:
        systems["untrained guide"] = [run("untrained guide", program, args.exec_samples)]
    if args.larger_core:
        larger = Core(args.larger_core, task=task.signature, max_tokens=task.core_max_tokens)
        systems[f"core alone ({args.larger_core})"] = [run("larger core", CoreOnly(larger))]
    best_stages = []
    asked = {s.strip() for s in args.stages.split(",") if s.strip()}
    if not asked or asked - set(STAGE_NAMES):
        parser.error(f"--stages: choose some of {', '.join(STAGE_NAMES)}, not {args.stages!r}")
    stages = tuple(s for s in STAGE_NAMES if s in asked)
    if args.rl_steps == 0:
        stages = tuple(s for s in stages if s != "rl")
    for seed in seeds:
        tuner = ExecTune(
            teachers, task.metric, stages=stages,
            sampling=SamplingConfig(candidates=args.candidates, show_reference=True,
                                    num_threads=args.sampling_threads),
            sft=SFTStageConfig(epochs=args.sft_epochs, seed=seed),
            rl=RLStageConfig(max_steps=args.rl_steps, seed=seed,
                             per_device_batch_size=args.rl_batch_size,
                             max_completion_length=task.guide_max_tokens)
            if args.rl_steps > 0 else RLStageConfig(seed=seed),
            output_dir=args.out / f"seed-{seed}", seed=seed, eval_threads=args.threads,
            exec_samples=args.exec_samples,
        )  # fmt: skip
        print(f"[headline] compiling, seed {seed} -> {args.out / f'seed-{seed}'}", flush=True)
        tuner.compile(program, train, dev)
        best_stages.append(tuner.report.get("best_stage", stages[-1]))
        for stage, compiled in tuner.stage_programs.items():
            if stage in STAGE_NAMES and STAGE_NAMES[stage] in wanted:
                systems.setdefault(STAGE_NAMES[stage], []).append(
                    run(f"{STAGE_NAMES[stage]} seed {seed}", compiled, args.exec_samples)
                )
        if "core-demos" in wanted and "sample" in tuner.stage_programs:
            if task.core_demo is None:
                print(f"[headline] {args.task} has no worked solutions: no core-demos control")
            else:
                control = core_with_guide_demos(tuner.stage_programs["sample"], train,
                                                task.core_demo)  # fmt: skip
                systems.setdefault(CORE_DEMOS, []).append(run(f"{CORE_DEMOS} seed {seed}", control))
        best = tuner.stage_programs[best_stages[-1]]
        if seed == seeds[0]:
            best.save(args.program_out)
        systems.setdefault("ExecTune", []).append(run(f"ExecTune seed {seed}", best))

    alone = systems["core alone"]
    comparisons = {name: compare(alone, rows, ids) for name, rows in systems.items()
                   if name != "core alone"}  # fmt: skip
    ladder = ["untrained guide", *[STAGE_NAMES[s] for s in stages]]
    adjacent = {f"{a} -> {b}": compare(systems[a], systems[b], ids)
                for a, b in zip(ladder, ladder[1:], strict=False)
                if a in systems and b in systems}  # fmt: skip
    guided = systems["ExecTune"]
    # A guided system's gain over the zero-shot core may be the demos its guide was shown:
    # every guided system against the core shown the same problems (per seed).
    vs_demos = {name: compare(systems[CORE_DEMOS], systems[name], ids)
                for name in [*STAGE_NAMES.values(), "ExecTune"]
                if CORE_DEMOS in systems and name in systems}  # fmt: skip
    answer_split = {name: [by_plan_answer(alone[0], r, ids) for r in rows]
                    for name, rows in systems.items()
                    if any(r.get("verdicts") for r in rows)}  # fmt: skip
    results = {
        "task": args.task, "split": "test", "n": len(test), "core": args.core,
        "guide": args.guide, "teacher": teachers, "train": len(train), "dev": len(dev),
        "seeds": seeds, "best_stage_per_seed": best_stages,
        "acc_core_alone": alone[0]["accuracy"]["estimate"],
        "acc_guided": summary(guided)["mean"],
        "acc_guided_std": summary(guided)["std"],
        "p_value": comparisons["ExecTune"]["bootstrap"]["p_value"],
        "mcnemar_per_seed": comparisons["ExecTune"]["mcnemar"],
        "executability": statistics.fmean(
            r["executability"]["estimate"] for r in guided if r["executability"]
        ) if any(r["executability"] for r in guided) else None,
        "cost_core_alone": alone[0]["cost_per_query"]["estimate"],
        "cost_guided": statistics.fmean(r["cost_per_query"]["estimate"] for r in guided),
        "systems": {name: {"per_seed": rows, "accuracy": summary(rows)}
                    for name, rows in systems.items()},
        "vs_core_alone": comparisons,
        "acc_core_alone_with_demos": summary(systems[CORE_DEMOS])["mean"]
        if CORE_DEMOS in systems else None,
        "vs_core_alone_with_demos": vs_demos,
        "adjacent_stages": adjacent,
        "gain_by_plan_answer": answer_split,
        "command": " ".join(shlex.quote(a) for a in ["python", *sys.argv]),
        "program": str(args.program_out),
        "engines": loaded_engines(),
        "environment": {k: v for k, v in sorted(os.environ.items())
                        if k.startswith("GCOP_") and k != "GCOP_HOME"},  # fmt: skip
        "machine": f"{platform.machine()} {os.cpu_count()} CPUs",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }  # fmt: skip
    write_json(args.results, results)
    plot(results, args.results.with_suffix(".png"))
    print(table(results), flush=True)


def loaded_engines() -> dict[str, str]:
    """The engine each local model ran on (the automatic choice differs by machine)."""
    from gcop.local import MODELS

    return MODELS.engines()


def table(results: dict[str, Any]) -> str:
    lines = [f"{results['task']} {results['split']}, n={results['n']}, seeds {results['seeds']}",
             f"{'system':28} {'accuracy (mean, std)':>22} {'vs core: diff, p':>20}"]  # fmt: skip
    for name, data in results["systems"].items():
        acc = data["accuracy"]
        versus = results["vs_core_alone"].get(name)
        diff = (f"{versus['bootstrap']['difference']:+.3f}, p={versus['bootstrap']['p_value']:.3f}"
                if versus else "")  # fmt: skip
        lines.append(f"{name:28} {acc['mean']:>13.3f} ({acc['std']:.3f}) {diff:>20}")
    for name, versus in results.get("vs_core_alone_with_demos", {}).items():
        boot = versus["bootstrap"]
        lines.append(f"{name} vs {CORE_DEMOS}: {boot['difference']:+.3f}, "
                     f"p={boot['p_value']:.3f}")  # fmt: skip
    for seed, split in zip(results["seeds"], results["gain_by_plan_answer"].get("ExecTune", []),
                           strict=False):  # fmt: skip
        lines.append(f"ExecTune seed {seed} vs core alone, gained/lost: " + "; ".join(
            f"{name.replace('_', ' ')} (n={part['n']}) {part['gained']}/{part['lost']} "
            f"p={part['p_value']:.3g}" for name, part in split.items()))  # fmt: skip
    return "\n".join(lines)


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for name, data in results["systems"].items():
        rows = data["per_seed"]
        acc = statistics.fmean(r["accuracy"]["estimate"] for r in rows)
        cost = statistics.fmean(r["cost_per_query"]["estimate"] for r in rows) * 1e6
        interval = wilson(round(acc * results["n"]), results["n"])
        ax.errorbar(cost, acc, yerr=[[acc - interval.low], [interval.high - acc]], fmt="o",
                    capsize=3, label=name)  # fmt: skip
    ax.set_xlabel("cost per query (micro-dollars, nominal local price)")
    ax.set_ylabel("test accuracy (95% CI)")
    ax.set_title(f"{results['task']} test, n={results['n']}, core {results['core']}", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    partial = path.with_suffix(".partial.png")
    fig.savefig(partial, dpi=120)
    plt.close(fig)
    os.replace(partial, path)


if __name__ == "__main__":
    main()
