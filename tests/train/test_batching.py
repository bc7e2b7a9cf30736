"""Token-budget batches, the per-epoch schedule (a pure function of the step) and right-padding collation."""

import random

import pytest
import torch

from pipo_agent.backends.model.constants import IGNORE_INDEX
from pipo_agent.backends.train.batching import EpochSchedule, collate, make_batches


def _lengths(seed: int = 0, n: int = 200) -> list[int]:
    rng = random.Random(seed)
    return [rng.randrange(10, 600) for _ in range(n)]


@pytest.mark.parametrize(("budget", "max_batch"), [(1024, 64), (4096, 8), (100, 64)])
def test_batches_cover_every_index_once_within_the_budget(budget: int, max_batch: int) -> None:
    lengths = _lengths()
    lengths[3] = 5000  # longer than any budget: gets a batch of its own
    batches = make_batches(lengths, budget, max_batch)
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    for batch in batches:
        assert len(batch) <= max_batch
        assert len(batch) == 1 or len(batch) * max(lengths[i] for i in batch) <= budget
    assert [3] in batches


def test_batches_group_similar_lengths() -> None:
    lengths = _lengths()
    batches = make_batches(lengths, 2048)
    longest = [max(lengths[i] for i in b) for b in batches]
    shortest = [min(lengths[i] for i in b) for b in batches]
    assert longest == sorted(longest)
    assert all(hi <= lo for hi, lo in zip(longest, shortest[1:], strict=False))


def test_epoch_schedule_is_a_pure_function_of_the_step() -> None:
    lengths = _lengths(1)
    schedule = EpochSchedule(lengths, 2048, seed=7)
    n = len(schedule)
    assert n > 3
    first = [schedule.batch(s) for s in range(3 * n)]
    for epoch in range(3):  # every sequence exactly once per epoch
        seen = sorted(i for b in first[epoch * n : (epoch + 1) * n] for i in b)
        assert seen == list(range(len(lengths)))
    assert first[:n] != first[n : 2 * n]  # the batch order is reshuffled per epoch
    fresh = EpochSchedule(lengths, 2048, seed=7)  # e.g. after a restart, asked out of order
    for step in (2 * n + 1, 5, n + 2, 0):
        assert fresh.batch(step) == first[step]
    other = EpochSchedule(lengths, 2048, seed=8)
    assert [other.batch(s) for s in range(n)] != first[:n]


def test_collate_right_pads_to_a_multiple() -> None:
    ids, labels = collate([([5, 6, 7], [-100, 6, 7]), ([8, 9, 10, 11, 12], [-100, -100, 10, 11, 12])], 1, 2)
    assert ids.dtype == labels.dtype == torch.long
    assert ids.tolist() == [[5, 6, 7, 1, 1, 1], [8, 9, 10, 11, 12, 1]]
    assert labels.tolist() == [
        [IGNORE_INDEX, 6, 7, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX],
        [IGNORE_INDEX, IGNORE_INDEX, 10, 11, 12, IGNORE_INDEX],
    ]
    ids, _ = collate([([5, 6], [5, 6])], 0)
    assert ids.tolist() == [[5, 6]]
