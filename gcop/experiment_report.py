"""An experiment's results on disk: `experiment-<name>.json`, `.md` and the frontier `.png`.

The JSON holds every row and every cell; the markdown table is the same rows for a reader
(one table per core, then the contrasts, the transfers and the cells that failed); the PNG
is accuracy against cost per query, one point per row, with the accuracy-cost frontier
(rows no other row beats on both) joined.
All three are written atomically, so a killed run never leaves half a file.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

from gcop.atomic import atomic_path, write_json, write_text
from gcop.attempts import describe
from gcop.paths import portable


def write_results(results: dict[str, Any], config) -> tuple[Path, Path, Path]:
    """Write the three files under `config.results_dir`; return their paths."""
    stem = config.results_dir / f"experiment-{results['name']}"
    json_path, md_path, png_path = (stem.with_suffix(s) for s in (".json", ".md", ".png"))
    write_json(json_path, portable(results, config.results_dir))
    write_text(md_path, markdown(results, png_path.name))
    plot_frontier(results, png_path)
    return json_path, md_path, png_path


def frontier(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the (cost, accuracy) points no other point beats on both (at most the
    same cost and strictly more accuracy, or strictly less cost and at least the same
    accuracy), by increasing cost."""
    keep = [
        i
        for i, (cost, acc) in enumerate(points)
        if not any((c <= cost and a > acc) or (c < cost and a >= acc) for c, a in points)
    ]
    return sorted(keep, key=lambda i: points[i][0])


def _mean_std(stats: dict[str, Any] | None, fmt: str = ".3f") -> str:
    if not stats:
        return "-"
    if len(stats["per_seed"]) == 1:
        return format(stats["mean"], fmt)
    return f"{format(stats['mean'], fmt)} ± {format(stats['std'], fmt)}"


def _fraction(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _versus(test: dict[str, Any] | None) -> str:
    if not test or not test.get("bootstrap"):
        return "-"
    boot = test["bootstrap"]
    return f"{boot['difference']:+.3f} (p={boot['p_value']:.3f})"


def markdown(results: dict[str, Any], png_name: str) -> str:
    """The results as markdown: what was run, then one table per core."""
    lambdas = [lam for lam in results["lambdas"] if lam] or results["lambdas"]  # U(0) = acc
    lines = [
        f"# Experiment `{results['name']}`: {results['task']} {results['split']}, "
        f"n={results['n']}, seeds {results['seeds']}",
        "",
        f"Guide `{results['guide']}`, teacher `{results['teacher']}`, {results['train']} "
        f"training and {results['dev']} dev problems; {executability_basis(results)}. "
        f"Command: `{results['command']}`; {results['machine']}, {results['date']}.",
        "",
        "Accuracy and costs are mean ± std over seeds; the interval is Wilson's 95% at n "
        "problems; differences are paired over problems and seeds (bootstrap p-value; the "
        "exact McNemar test per seed is in the JSON). $/query is nominal for local models.",
        "",
        f"![accuracy-cost frontier]({png_name})",
    ]
    header = ["method", "accuracy", "95% CI", "executability", "$/query (guide / core)",
              *[f"U λ={lam:g}" for lam in lambdas], "vs core alone",
              "vs best baseline"]  # fmt: skip
    for core in dict.fromkeys(row["core"] for row in results["rows"]):
        best = results["best_baseline"].get(core, "-")
        lines += ["", f"## core `{core}` (best baseline: {best})", "",
                  "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]  # fmt: skip
        for row in (r for r in results["rows"] if r["core"] == core):
            interval = row["accuracy_interval"] or {"low": math.nan, "high": math.nan}
            cost = (f"{_mean_std(row['cost_per_query'], '.2e')} "
                    f"({row['guide_cost_per_query']['mean']:.1e} / "
                    f"{row['core_cost_per_query']['mean']:.1e})")  # fmt: skip
            label = row["label"] if row["seeds"] == results["seeds"] else (
                f"{row['label']} (seeds {', '.join(map(str, row['seeds']))})")  # fmt: skip
            cells = [label, _mean_std(row["accuracy"]),
                     f"[{interval['low']:.3f}, {interval['high']:.3f}]",
                     _mean_std(row["executability"]), cost,
                     *[_mean_std(row["utility"][str(lam)]) for lam in lambdas],
                     _versus(row["vs_core_alone"]), _versus(row["vs_best_baseline"])]  # fmt: skip
            lines.append("| " + " | ".join(cells) + " |")
    if results.get("contrasts"):
        lines += ["", "## contrasts: one ingredient at a time", "",
                  "The same paired tests between two rows that differ in one ingredient.", "",
                  "| contrast | core | new | old | seeds | n | difference [95% CI] | p | "
                  "per seed: gained / lost (McNemar p) |", "|" + "---|" * 9]  # fmt: skip
        for c in results["contrasts"]:
            boot = c["bootstrap"] or {}
            difference = (f"{boot['difference']:+.3f} [{boot['low']:+.3f}, {boot['high']:+.3f}]"
                          if boot else "-")  # fmt: skip
            per_seed = "; ".join(f"{m['gained']} / {m['lost']} ({m['p_value']:.3f})"
                                 for m in c["mcnemar"])  # fmt: skip
            p_value = f"{boot['p_value']:.3f}" if boot else "-"
            lines.append(f"| {c['name']} | `{c['core'].rsplit('/', 1)[-1]}` | {c['new']} | "
                         f"{c['old']} | {c['seeds']} | {c['n']} | {difference} | {p_value} | "
                         f"{per_seed} |")  # fmt: skip
    if split_rows := [r for r in results["rows"] if r.get("by_plan")]:
        lines += ["", "## where the guided rows gain and lose", "",
                  "Each guided row's problems split by whether the core was shown the guide's "
                  "plan (valid, repaired or leaking) or answered alone (the guide's output was "
                  "unusable), with the core alone's accuracy on the same problems; n counts "
                  "problem-seed pairs. The last column splits the row's difference from the "
                  "core alone (on these pairs) into what the plans shown made and what the "
                  "problems answered alone made (there, decoding noise).", "",
                  "| method | core | plan shown: n | accuracy | core alone on them | "
                  "answered alone: n | accuracy | core alone on them | "
                  "difference: from plans + answered alone |",
                  "|" + "---|" * 9]  # fmt: skip
        for row in split_rows:
            cells = [row["label"], f"`{row['core'].rsplit('/', 1)[-1]}`"]
            for key in ("shown", "not_shown"):
                part = row["by_plan"][key]
                cells += [str(part["n"]), _fraction(part["accuracy"]),
                          _fraction(part["core_alone"])]  # fmt: skip
            shown, alone = (row["by_plan"][k].get("contribution") for k in ("shown", "not_shown"))
            cells.append("-" if shown is None else
                         f"{shown + alone:+.3f}: {shown:+.3f} + {alone:+.3f}")  # fmt: skip
            lines.append("| " + " | ".join(cells) + " |")
    if results["transfer"]:
        lines += ["", "## guide transfer", "",
                  "| from | to | stage | moved as is | re-tuned | compiled for the target | "
                  "target core alone |", "|---|---|---|---|---|---|---|"]  # fmt: skip
        for t in results["transfer"]:
            lines.append("| " + " | ".join([
                f"`{t['source']}`", f"`{t['target']}`", t["stage"], _mean_std(t.get("transfer")),
                _mean_std(t.get("retune")), _mean_std(t.get("native")),
                _mean_std(t.get("core_alone"))]) + " |")  # fmt: skip
    if results.get("failed"):
        lines += ["", "## failed cells (a rerun retries them)", "",
                  "| method | core | seed | error |", "|---|---|---|---|"]  # fmt: skip
        for f in results["failed"]:
            error = " ".join(f["error"].split()).replace("|", "\\|")[:300]
            lines.append(f"| {f['label']} | `{f['core']}` | {f['seed']} | {error} |")
    if results.get("unfinished"):
        lines += ["", "## cells not yet run (`gcop experiment FILE` runs them)", "",
                  ", ".join(f"{u['label']} ({u['core'].rsplit('/', 1)[-1]}, seed {u['seed']})"
                            for u in results["unfinished"])]  # fmt: skip
        for u in results["unfinished"]:
            lines += [f"- {u['label']} (seed {u['seed']}) was {describe(a)}"
                      for a in u.get("attempts", [])]  # fmt: skip
    return "\n".join(lines) + "\n"


def executability_basis(results: dict[str, Any]) -> str:
    """What the executability column measures: sampled strategies, or the greedy one."""
    if samples := results["exec_samples"]:
        return f"guide-averaged executability over {samples} sampled strategies per problem"
    return "executability of each problem's greedy strategy (no sampled ones: exec_samples = 0)"


def plot_frontier(results: dict[str, Any], path: Path) -> None:
    """Accuracy (Wilson 95% at n) against cost per query, one point per row, markers per
    core; the frontier is the dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = results["rows"]
    markers = dict(zip(dict.fromkeys(r["core"] for r in rows), itertools.cycle("osD^v<>ph*")))
    fig, ax = plt.subplots(figsize=(7, 5))
    points = []
    rows = [row for row in rows if row["accuracy_interval"]]  # not those whose calls all failed
    for row in rows:
        cost, acc = row["cost_per_query"]["mean"] * 1e6, row["accuracy"]["mean"]
        interval = row["accuracy_interval"]
        ax.errorbar(cost, acc, yerr=[[acc - interval["low"]], [interval["high"] - acc]],
                    fmt=markers[row["core"]], capsize=3,
                    label=f"{row['label']} ({row['core'].rsplit('/', 1)[-1][:24]})")  # fmt: skip
        points.append((cost, acc))
    edge = frontier(points)
    ax.plot([points[i][0] for i in edge], [points[i][1] for i in edge], "k--", lw=0.8,
            label="frontier")  # fmt: skip
    costs = [c for c, _ in points if c > 0]
    if costs and max(costs) / min(costs) > 30:
        ax.set_xscale("log")
    ax.set_xlabel("cost per query (micro-dollars; nominal price for local models)")
    ax.set_ylabel(f"{results['split']} accuracy (Wilson 95%)")
    ax.set_title(f"{results['name']}: {results['task']} {results['split']}, n={results['n']}, "
                 f"seeds {results['seeds']}", fontsize=9)  # fmt: skip
    ax.legend(fontsize=6, loc="best")
    fig.tight_layout()
    with atomic_path(path) as partial:
        fig.savefig(partial, dpi=120, format="png")
    plt.close(fig)
