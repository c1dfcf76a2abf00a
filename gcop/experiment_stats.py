"""An experiment's statistics: per-row means over seeds and paired tests between rows.

A *row* is one method (or one transfer) on one core; its cells are its seeds. Every cell
scored the same problems, so rows are compared per problem (:mod:`gcop.stats`): an exact
McNemar test per seed on the problems where the two disagree, and a paired bootstrap over
problems that keeps each problem's outcomes under both rows, across seeds, together. Each
row is tested against the core alone on its core and against the *best baseline* there
(the baseline row with the highest mean accuracy; the cheaper one on a tie). Seeds are
paired by their number: every method runs every seed, so a seed one row lacks (a failed
cell, a grid stopped part-way) is left out of that pair. Failed cells (`status: failed`)
make no row: they are listed apart.

Beside those, *contrasts* pair two rows of one core that differ in one ingredient (the
paper's ablation: the acceptance filter, each ExecTune stage over the one before, the
structure-aware reward over the task reward alone), with the same tests.
"""

from __future__ import annotations

import os
import platform
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from gcop.metrics import utility, wilson
from gcop.stats import discordant, mcnemar_exact, paired_bootstrap

CORE_ALONE = "core"
FAILED = "failed"
"""A cell's `status` when its method raised (see :func:`gcop.experiment.run_cell`)."""


ABLATIONS: tuple[tuple[str, str, str], ...] = (
    ("acceptance filter (demos)", "exectune-as", "gcop-fewshot"),
    ("acceptance filter (SFT)", "exectune-sft", "gcop-supervised"),
    ("SFT over AS", "exectune-sft", "exectune-as"),
    ("RL over SFT", "exectune-rl", "exectune-sft"),
    ("structure-aware reward", "exectune-rl", "gcop-advisor"),
    ("demos over zero-shot guide", "gcop-fewshot", "gcop-base"),
)
"""The contrasts every report computes where the grid has both rows: (name, new, old), each
pair the same pipeline with one ingredient added (see docs/experiments.md, the methods)."""


def seed_stats(values: Sequence[float]) -> dict[str, Any]:
    """Mean and sample standard deviation (n - 1) over seeds; 0 for a single seed."""
    values = [float(v) for v in values]
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": statistics.fmean(values), "std": std, "per_seed": values}


def paired_comparison(
    old: Sequence[dict[str, float]], new: Sequence[dict[str, float]]
) -> dict[str, Any]:
    """`new` vs `old`, each one `{problem id: score}` per seed (a single seed given for one
    side, e.g. a deterministic baseline, is reused for every seed of the other). Only
    problems scored in every one of these rows are compared (a failed call is never a wrong
    answer)."""
    seeds = max(len(old), len(new))
    ids = sorted(set.intersection(*(set(row) for row in (*old, *new))))
    old_rows = [[old[s % len(old)][i] for i in ids] for s in range(seeds)]
    new_rows = [[new[s % len(new)][i] for i in ids] for s in range(seeds)]
    per_seed = []
    for before, after in zip(old_rows, new_rows, strict=True):
        gained, lost = discordant(before, after)
        per_seed.append({"gained": gained, "lost": lost, "p_value": mcnemar_exact(gained, lost)})
    if not ids:
        return {"n": 0, "mcnemar": per_seed, "bootstrap": None}
    return {"n": len(ids), "mcnemar": per_seed,
            "bootstrap": asdict(paired_bootstrap(old_rows, new_rows))}  # fmt: skip


def summarize_row(cells: list[dict[str, Any]], lambdas: Sequence[float]) -> dict[str, Any]:
    """One row from its cells (one per seed): means and standard deviations over seeds.
    Utility is computed here at `lambdas`, so cells read back from a run with other
    lambdas still aggregate."""
    cells = sorted(cells, key=lambda c: c["seed"])
    first = cells[0]
    accuracy = seed_stats([c["accuracy"]["estimate"] for c in cells])
    n = min(c["n"] for c in cells)
    executability = [
        (c["guide_averaged_executability"] or c["executability"])["estimate"]
        for c in cells
        if c["guide_averaged_executability"] or c["executability"]
    ]
    return {
        "label": first["label"], "method": first["method"], "core": first["core"],
        "transfer": first.get("transfer"), "baseline": first["baseline"],
        "guided": first["guided"], "seeds": [c["seed"] for c in cells], "n": n,
        "accuracy": accuracy,
        "accuracy_interval": (
            asdict(wilson(round(accuracy["mean"] * n), n)) if n else None
        ),  # every call of a cell failed: no accuracy to bound
        "executability": seed_stats(executability) if executability else None,
        "cost_per_query": seed_stats([c["cost_per_query"]["estimate"] for c in cells]),
        "guide_cost_per_query": seed_stats([c["guide_cost_per_query"] for c in cells]),
        "core_cost_per_query": seed_stats([c["core_cost_per_query"] for c in cells]),
        "utility": {str(lam): seed_stats([utility(c["accuracy"]["estimate"],
                                                  c["cost_per_query"]["estimate"], lam)
                                          for c in cells]) for lam in lambdas},
        "notes": [c.get("notes") or {} for c in cells],
    }  # fmt: skip


def best_baselines(rows: list[dict[str, Any]]) -> dict[str, str]:
    """Per core, the label of the baseline row with the highest mean accuracy (on a tie,
    the lower cost, then the first listed)."""
    best: dict[str, dict[str, Any]] = {}
    for row in rows:
        if not row["baseline"] or row["transfer"]:
            continue
        current = best.get(row["core"])
        key = (row["accuracy"]["mean"], -row["cost_per_query"]["mean"])
        if current is None or key > (current["accuracy"]["mean"],
                                      -current["cost_per_query"]["mean"]):  # fmt: skip
            best[row["core"]] = row
    return {core: row["label"] for core, row in best.items()}


def aggregate(
    config, cells: list[dict[str, Any]], problem_ids: list[str],
    unfinished: list[dict[str, Any]] | tuple = (),
) -> dict[str, Any]:  # fmt: skip
    """The experiment's results: every row with its statistics, the paired tests, the
    transfer summary, the failed cells, the cells not yet run (a report of a grid stopped
    part-way) and every cell (scores included)."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for cell in cells:
        if cell.get("status") != FAILED:  # cells written before statuses existed are ok
            groups.setdefault((cell["label"], cell["core"]), []).append(cell)
    rows = [summarize_row(group, config.lambdas) for group in groups.values()]
    best = best_baselines(rows)

    def scores(label: str, core: str) -> dict[int, dict[str, float]]:
        return {c["seed"]: c["scores"] for c in groups.get((label, core), [])}

    for row in rows:
        alone = scores(CORE_ALONE, row["core"])
        own = groups[(row["label"], row["core"])]
        row["by_plan"] = plan_split(own, alone) if row["guided"] else None
        mine = scores(row["label"], row["core"])
        against = {"vs_core_alone": CORE_ALONE, "vs_best_baseline": best.get(row["core"])}
        for key, other in against.items():
            theirs = scores(other, row["core"]) if other and other != row["label"] else {}
            old, new = paired_seeds(theirs, mine)
            row[key] = {"against": other, **paired_comparison(old, new)} if old else None
    failed = [c for c in cells if c.get("status") == FAILED]
    wanted = [*ABLATIONS, *((f"{new} vs {old}", new, old) for new, old in config.contrasts)]
    return {
        "name": config.name, "task": config.task, "split": config.split,
        "n": len(problem_ids), "seeds": config.seeds, "cores": config.cores,
        "guide": config.guide, "teacher": config.teacher, "train": config.train,
        "dev": config.dev, "exec_samples": config.exec_samples, "lambdas": config.lambdas,
        "methods": config.methods, "best_baseline": best, "rows": rows,
        # what `gcop experiment --reuse` checks before taking these cells into a work folder
        "identity": config.identity(),
        "contrasts": contrasts(rows, scores, wanted),
        "transfer": transfer_summary(rows), "failed": [failure(c) for c in failed],
        "unfinished": list(unfinished),
        "cells": cells,
        "command": f"gcop experiment {config.source}" if config.source else None,
        "machine": f"{platform.machine()} {os.cpu_count()} CPUs",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }  # fmt: skip


def paired_seeds(
    old: dict[int, dict[str, float]], new: dict[int, dict[str, float]]
) -> tuple[list[dict[str, float]], list[dict[str, float]]]:
    """Two rows' scores seed by seed, for :func:`paired_comparison`: the seeds both have
    (never one row's seed 0 against the other's seed 1: a trained row's seeds differ);
    empty lists when they share none."""
    common = sorted(set(old) & set(new))
    return [old[s] for s in common], [new[s] for s in common]


def contrasts(
    rows: list[dict[str, Any]], scores: Callable[[str, str], dict[int, dict[str, float]]],
    wanted: Sequence[tuple[str, str, str]],
) -> list[dict[str, Any]]:  # fmt: skip
    """Each wanted (name, new, old) on every core that has both rows, paired like the rows'
    own tests; a pair listed twice is tested once."""
    present = {(row["label"], row["core"]) for row in rows}
    cores = dict.fromkeys(row["core"] for row in rows)
    found, seen = [], set()
    for name, new, old in wanted:
        for core in cores:
            if (new, old, core) in seen or not {(new, core), (old, core)} <= present:
                continue
            seen.add((new, old, core))
            before, after = paired_seeds(scores(old, core), scores(new, core))
            if before:
                found.append({"name": name, "core": core, "new": new, "old": old,
                              "seeds": len(before),
                              **paired_comparison(before, after)})  # fmt: skip
    return found


SHOWN = frozenset({"valid", "repaired", "leak"})
"""Verdicts of a strategy the core was shown (a leak is found only by the evaluation, with
the gold answer); any other verdict means the guide's output was unusable and the core
answered alone."""


def plan_split(
    cells: list[dict[str, Any]], core_alone: dict[int, dict[str, float]]
) -> dict[str, dict[str, Any]] | None:
    """Where a guided row gains and loses: its problems split by whether the core was shown
    the guide's plan or answered alone, each with the row's accuracy and the core alone's on
    the same problems (pooled over the seeds both have; `n` counts problem-seed pairs). On
    the problems answered alone the two should agree; on the others the difference is what
    the plans did. Each part's `contribution` is its share of the row's difference from
    the core alone, (row right - core alone right) / all problem-seed pairs: the two parts
    add up to the whole difference, so a report can say how much of a loss the plans made
    and how much is decoding noise on the problems answered alone. None for a row without
    per-problem verdicts (unguided, or a cell written before they were kept)."""
    split = {"shown": [0, 0.0, 0.0], "not_shown": [0, 0.0, 0.0]}
    for cell in cells:
        verdicts, alone = cell.get("verdict_by_problem"), core_alone.get(cell["seed"])
        if not verdicts or alone is None:
            continue
        for problem, score in cell["scores"].items():
            if problem in verdicts and problem in alone:
                entry = split["shown" if verdicts[problem] in SHOWN else "not_shown"]
                entry[0] += 1
                entry[1] += score
                entry[2] += alone[problem]
    total = sum(n for n, _, _ in split.values())
    if not total:
        return None
    return {key: {"n": n, "accuracy": right / n if n else None,
                  "core_alone": alone / n if n else None,
                  "contribution": (right - alone) / total}
            for key, (n, right, alone) in split.items()}  # fmt: skip


def failure(cell: dict[str, Any]) -> dict[str, Any]:
    """A failed cell in one line: which one, and its error's type and message."""
    return {"label": cell["label"], "core": cell["core"], "seed": cell["seed"],
            "error": f"{cell['error']['type']}: {cell['error']['message']}"}  # fmt: skip


def transfer_summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per transfer: the moved guide on the target core, the re-tuned one with what
    re-tuning cost, and the guide compiled for the target itself (when the grid has it)."""
    summaries: dict[tuple[str, str, str], dict[str, Any]] = {}
    for row in rows:
        spec = row["transfer"]
        if not spec:
            continue
        entry = summaries.setdefault(
            (spec["source"], spec["target"], spec["stage"]),
            {**spec, "native": _accuracy(rows, f"exectune-{spec['stage']}", spec["target"]),
             "core_alone": _accuracy(rows, CORE_ALONE, spec["target"]),
             # the re-tuned row's accuracy once scored: until then None (asked for, not
             # run yet), and False where the spec asks for none (`retune = false`)
             "retune": spec["retune"] and None},
        )  # fmt: skip
        entry[row["method"]] = row["accuracy"]
        if row["method"] == "retune":
            entry["retune_cost"] = [n.get("retune") for n in row["notes"]]
    return list(summaries.values())


def _accuracy(rows: list[dict[str, Any]], label: str, core: str) -> dict[str, Any] | None:
    return next((r["accuracy"] for r in rows if r["label"] == label and r["core"] == core), None)
