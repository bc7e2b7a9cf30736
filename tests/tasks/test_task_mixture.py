"""The training mixture over families and difficulties."""

import collections

import pytest

from pipo_agent.tasks import TaskMix, TaskSpecError, UnknownFamilyError, generate_mixture


def test_mixture_is_deterministic_and_covers_every_family_and_difficulty() -> None:
    tasks = generate_mixture(400, seed=3)
    assert tasks == generate_mixture(400, seed=3)
    assert {t.family for t in tasks} == {"arithmetic", "conversion", "strings"}
    assert {t.difficulty for t in tasks} == {1, 2, 3, 4, 5}


def test_mixture_follows_its_weights() -> None:
    mix = TaskMix(family_weights={"strings": 1.0}, difficulty_weights={"strings": (0, 0, 0, 0, 1)})
    tasks = generate_mixture(50, seed=0, mix=mix)
    assert {(t.family, t.difficulty) for t in tasks} == {("strings", 5)}
    counts = collections.Counter(t.difficulty for t in generate_mixture(2000, seed=1))
    assert counts[1] > counts[5]


def test_invalid_mixes_are_rejected() -> None:
    with pytest.raises(UnknownFamilyError):
        TaskMix(family_weights={"poetry": 1.0})
    with pytest.raises(TaskSpecError):
        TaskMix(family_weights={"strings": 0.0})
    with pytest.raises(TaskSpecError):
        TaskMix(difficulty_weights={"strings": (1.0, 1.0)})
    with pytest.raises(TaskSpecError):
        generate_mixture(-1, seed=0)
