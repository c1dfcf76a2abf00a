"""Paired tests agree with values computed by hand."""

from __future__ import annotations

import pytest

from gcop.stats import discordant, mcnemar_exact, paired_bootstrap


@pytest.mark.parametrize(
    ("gained", "lost", "p"),
    [
        (0, 0, 1.0),
        (5, 0, 2 / 32),  # 2 * C(5,0) / 2^5
        (6, 1, 2 * (1 + 7) / 128),  # 2 * (C(7,0) + C(7,1)) / 2^7
        (6, 10, 2 * 14893 / 65536),  # 2 * sum_{i<=6} C(16,i) / 2^16
        (3, 3, 1.0),  # capped at 1
    ],
)
def test_mcnemar_exact_by_hand(gained: int, lost: int, p: float) -> None:
    assert mcnemar_exact(gained, lost) == pytest.approx(p)
    assert mcnemar_exact(lost, gained) == pytest.approx(p)  # two-sided


def test_discordant_counts_and_length_check() -> None:
    assert discordant([1, 0, 1, 0], [1, 1, 0, 1]) == (2, 1)
    with pytest.raises(ValueError, match="length"):
        discordant([1], [1, 0])


def test_paired_bootstrap_on_fixed_inputs() -> None:
    same = paired_bootstrap([0, 1, 0, 1], [1, 1, 1, 1], resamples=2000)
    assert same.difference == 0.5 and same.low >= 0.0 and same.high <= 1.0
    always = paired_bootstrap([0] * 20, [1] * 20, resamples=2000)
    assert (always.difference, always.low, always.high, always.p_value) == (1.0, 1.0, 1.0, 0.0)
    none = paired_bootstrap([1, 0] * 10, [1, 0] * 10, resamples=2000)
    assert none.difference == 0.0 and none.p_value == 1.0
    # seeds: problem 0 is gained in one of two seeds (0.5), problem 1 in both (1.0)
    seeds = paired_bootstrap([[0, 0], [0, 0]], [[1, 1], [0, 1]], resamples=2000)
    assert seeds.difference == pytest.approx(0.75)
    assert seeds.low == pytest.approx(0.5) and seeds.high == pytest.approx(1.0)
    with pytest.raises(ValueError, match="same seeds"):
        paired_bootstrap([[0, 1]], [[0, 1], [1, 1]])
