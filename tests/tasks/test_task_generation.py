"""Task generation: determinism by seed, reproducible single tasks, validation, serialization."""

import json

import pytest

from pipo_agent.tasks import (
    AnswerKind,
    Task,
    TaskSpecError,
    UnknownFamilyError,
    family_names,
    generate_tasks,
    get_family,
    make_task,
)


def test_three_families_are_registered() -> None:
    assert family_names() == ["arithmetic", "conversion", "strings"]


@pytest.mark.parametrize("family", ["arithmetic", "conversion", "strings"])
def test_same_seed_same_tasks_and_different_seed_different_tasks(family: str) -> None:
    first = generate_tasks(family, 30, seed=7)
    assert first == generate_tasks(family, 30, seed=7)
    assert [t.question for t in first] != [t.question for t in generate_tasks(family, 30, seed=8)]


@pytest.mark.parametrize("family", ["arithmetic", "conversion", "strings"])
def test_task_seed_and_difficulty_reproduce_the_task(family: str) -> None:
    for task in generate_tasks(family, 20, seed=3):
        assert make_task(family, task.seed, task.difficulty) == task


def test_generation_does_not_touch_the_global_rng() -> None:
    import random

    random.seed(1234)
    expected = random.random()
    random.seed(1234)
    for family in family_names():
        generate_tasks(family, 20, seed=1)
    assert random.random() == expected


def test_difficulty_range_is_respected() -> None:
    tasks = generate_tasks("arithmetic", 40, seed=0, difficulty_range=(2, 3))
    assert {t.difficulty for t in tasks} == {2, 3}
    assert {t.difficulty for t in generate_tasks("strings", 10, seed=0, difficulty_range=(5, 5))} == {5}


def test_unknown_family_lists_valid_names() -> None:
    with pytest.raises(UnknownFamilyError, match="arithmetic, conversion, strings"):
        get_family("calculus")
    with pytest.raises(UnknownFamilyError):
        generate_tasks("calculus", 1, seed=0)


@pytest.mark.parametrize("bad", [(0, 3), (1, 6), (4, 2)])
def test_bad_difficulty_ranges_are_rejected(bad: tuple[int, int]) -> None:
    with pytest.raises(TaskSpecError):
        generate_tasks("strings", 1, seed=0, difficulty_range=bad)


def test_bad_counts_and_difficulties_are_rejected() -> None:
    with pytest.raises(TaskSpecError):
        generate_tasks("strings", -1, seed=0)
    with pytest.raises(TaskSpecError):
        make_task("strings", 1, 9)
    with pytest.raises(TaskSpecError):
        Task("strings", "q", "a", 0, 1)


@pytest.mark.parametrize("family", ["arithmetic", "conversion", "strings"])
def test_tasks_round_trip_through_json(family: str) -> None:
    for task in generate_tasks(family, 15, seed=5):
        assert Task.from_dict(json.loads(json.dumps(task.to_dict()))) == task


def test_from_dict_rejects_unknown_keys() -> None:
    data = generate_tasks("strings", 1, seed=0)[0].to_dict() | {"colour": "red"}
    with pytest.raises(TaskSpecError, match="colour"):
        Task.from_dict(data)


def test_answer_kinds_per_family() -> None:
    assert {t.answer_kind for t in generate_tasks("arithmetic", 20, seed=0)} == {AnswerKind.INTEGER}
    assert {t.answer_kind for t in generate_tasks("conversion", 20, seed=0)} == {AnswerKind.INTEGER}
    kinds = {t.answer_kind for t in generate_tasks("strings", 200, seed=0)}
    assert kinds == {AnswerKind.INTEGER, AnswerKind.TEXT, AnswerKind.LIST}


def test_arithmetic_uses_two_to_six_operations() -> None:
    for task in generate_tasks("arithmetic", 100, seed=2):
        events = task.meta["events"]
        operations = sum(2 if e["kind"] in ("add_group", "sub_group") else 1 for e in events)
        assert operations == task.difficulty + 1
        assert 2 <= operations <= 6
        assert int(task.answer) >= 0


def test_every_strings_operation_appears() -> None:
    ops = {t.meta["op"] for t in generate_tasks("strings", 200, seed=1)}
    assert ops == {
        "reverse_letters",
        "reverse_list",
        "sort_numbers",
        "sort_words",
        "count_letter",
        "dedupe",
        "every_kth",
        "upper_join",
    }
