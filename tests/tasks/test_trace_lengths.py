"""Difficulty scales the length of the gold trajectories (in characters; the tokenizer test counts tokens)."""

import itertools
import statistics

import pytest

from pipo_agent.tasks import generate_tasks, length_stats, solve


def _median_chars(family: str, difficulty: int, n: int = 40) -> float:
    tasks = generate_tasks(family, n, seed=21, difficulty_range=(difficulty, difficulty))
    return statistics.median(len(solve(task).render()) for task in tasks)


@pytest.mark.parametrize("family", ["arithmetic", "conversion", "strings"])
def test_median_length_grows_with_difficulty(family: str) -> None:
    medians = [_median_chars(family, difficulty) for difficulty in range(1, 6)]
    for easier, harder in itertools.pairwise(medians):
        assert harder >= 0.9 * easier, medians
    assert medians[-1] > 1.8 * medians[0], medians


def test_top_strings_difficulty_is_thousands_of_tokens_long() -> None:
    # These traces run at about 1.6 characters per token (numbers are one token per digit), so 3000
    # characters is a safe floor for 1500 tokens; the tokenizer test checks real token counts.
    assert _median_chars("strings", 5) > 3000
    sizes = [
        len(t.meta["items"][0]) if t.meta["op"] == "reverse_letters" else len(t.meta["items"])
        for t in generate_tasks("strings", 200, seed=1, difficulty_range=(5, 5))
    ]
    assert max(sizes) >= 250


def test_length_stats() -> None:
    trajectories = [solve(task) for task in generate_tasks("strings", 11, seed=0, difficulty_range=(1, 1))]
    stats = length_stats(trajectories)
    lengths = sorted(len(t.render()) for t in trajectories)
    assert stats.count == 11
    assert stats.median == lengths[5]
    assert stats.max == lengths[-1]
    assert stats.total == sum(lengths)
    assert length_stats(trajectories, measure=lambda text: 1).total == 11
