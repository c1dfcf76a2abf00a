"""Paired significance tests for comparing two systems on the same problems.

Two programs run on the same problems are compared per problem, not by their separate
accuracies: the exact McNemar test looks only at the problems where they disagree, and the
paired bootstrap resamples problems (keeping each problem's outcomes under both systems,
and across seeds, together). Written here because scipy's `binomtest` would add a
dependency for one line of arithmetic, and no maintained library does the paired,
multi-seed bootstrap over problems.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass


def mcnemar_exact(gained: int, lost: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts: `gained` problems only
    the new system solves, `lost` problems only the old one solves (a binomial test of
    gained vs lost at p = 1/2)."""
    n = gained + lost
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(gained, lost) + 1)) / 2**n
    return min(1.0, 2 * tail)


def discordant(old: Sequence[float], new: Sequence[float]) -> tuple[int, int]:
    """(gained, lost): problems `new` solves and `old` does not, and the reverse."""
    if len(old) != len(new):
        raise ValueError(f"paired outcomes differ in length: {len(old)} vs {len(new)}")
    gained = sum(n > 0 and not o > 0 for o, n in zip(old, new, strict=True))
    lost = sum(o > 0 and not n > 0 for o, n in zip(old, new, strict=True))
    return gained, lost


@dataclass(frozen=True)
class PairedDifference:
    """Mean of new - old over problems (and seeds), its bootstrap 95% interval and the
    two-sided bootstrap p-value of "no difference"."""

    difference: float
    low: float
    high: float
    p_value: float


def paired_bootstrap(
    old: Sequence[Sequence[float]] | Sequence[float],
    new: Sequence[Sequence[float]] | Sequence[float],
    *,
    resamples: int = 10_000,
    seed: int = 0,
) -> PairedDifference:
    """Bootstrap over problems of mean(new - old). `old`/`new` are per-problem scores, or
    one such list per seed (problem i is the same problem in every seed's list): a
    resample draws problems with replacement and averages each drawn problem over seeds."""
    old_rows, new_rows = _as_rows(old), _as_rows(new)
    if len(old_rows) != len(new_rows) or any(
        len(a) != len(b) for a, b in zip(old_rows, new_rows, strict=True)
    ):
        raise ValueError("old and new must have the same seeds and problems")
    n = len(old_rows[0])
    per_problem = [
        sum(new_rows[s][i] - old_rows[s][i] for s in range(len(old_rows))) / len(old_rows)
        for i in range(n)
    ]
    observed = sum(per_problem) / n
    rng = random.Random(seed)
    means = sorted(
        sum(per_problem[rng.randrange(n)] for _ in range(n)) / n for _ in range(resamples)
    )
    low, high = means[int(0.025 * resamples)], means[int(0.975 * resamples) - 1]
    below = sum(m <= 0 for m in means) / resamples
    above = sum(m >= 0 for m in means) / resamples
    return PairedDifference(observed, low, high, min(1.0, 2 * min(below, above)))


def _as_rows(values) -> list[list[float]]:
    values = list(values)
    if values and isinstance(values[0], Sequence):
        return [[float(v) for v in row] for row in values]
    return [[float(v) for v in values]]
