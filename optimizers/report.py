"""The compile report as a picture: dev metrics after each stage, SFT loss, RL reward."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gcop.atomic import atomic_path


def plot_compile_report(report: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (dev_ax, sft_ax, rl_ax) = plt.subplots(1, 3, figsize=(13, 3.8))
    dev = report.get("dev", {})
    stages = list(dev)
    for offset, metric in ((-0.15, "accuracy"), (0.15, "executability")):
        points = [(i, dev[s][metric]) for i, s in enumerate(stages) if dev[s].get(metric)]
        if points:
            xs = [i + offset for i, _ in points]
            ys = [p["estimate"] for _, p in points]
            errors = [[p["estimate"] - p["low"] for _, p in points],
                      [p["high"] - p["estimate"] for _, p in points]]  # fmt: skip
            dev_ax.errorbar(xs, ys, yerr=errors, fmt="o", capsize=3, label=metric)
    dev_ax.set_xticks(range(len(stages)), stages)
    dev_ax.set_ylim(0, 1)
    dev_ax.set_title("dev set after each stage (95% CI)", fontsize=9)
    if stages:
        dev_ax.legend(fontsize=8)
    sft_log = report.get("stages", {}).get("sft", {}).get("log", [])
    losses = [(row["step"], row["loss"]) for row in sft_log if "loss" in row and "step" in row]
    if losses:
        sft_ax.plot(*zip(*losses, strict=True), marker=".")
    sft_ax.set_title("SFT training loss", fontsize=9)
    sft_ax.set_xlabel("step")
    rewards = report.get("stages", {}).get("rl", {}).get("reward", [])
    for component in ("reward", "valid", "success", "leak", "harm"):
        values = [row[component] for row in rewards if component in row]
        if values:
            rl_ax.plot(range(1, len(values) + 1), values, marker=".", label=component)
    rl_ax.set_title("RL reward components (mean per batch)", fontsize=9)
    rl_ax.set_xlabel("reward call")
    if rewards:
        rl_ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as partial:
        fig.savefig(partial, dpi=110, format="png")
    plt.close(fig)
    return path
