"""The task families by name, and deterministic task generation from a seed."""

import random
from collections.abc import Callable
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from pipo_agent.tasks import arithmetic, conversion, strings
from pipo_agent.tasks.errors import TaskSpecError, UnknownFamilyError
from pipo_agent.tasks.types import MAX_DIFFICULTY, MIN_DIFFICULTY, Task, Trajectory, check_difficulty


@dataclass(frozen=True, slots=True)
class Family:
    """A family's generator ``(seed, difficulty) -> Task`` and gold solver ``Task -> Trajectory``."""

    name: str
    generate: Callable[[int, int], Task]
    solve: Callable[[Task], Trajectory]
    description: str


FAMILIES: Final = MappingProxyType(
    {
        family.name: family
        for family in (
            Family(arithmetic.FAMILY, arithmetic.generate, arithmetic.solve, "multi-step word problems"),
            Family(conversion.FAMILY, conversion.generate, conversion.solve, "prices and unit conversions"),
            Family(strings.FAMILY, strings.generate, strings.solve, "exact string and list manipulation"),
        )
    }
)


def family_names() -> list[str]:
    return sorted(FAMILIES)


def get_family(name: str) -> Family:
    try:
        return FAMILIES[name]
    except KeyError:
        raise UnknownFamilyError(
            f"unknown task family {name!r}; valid names: {', '.join(family_names())}"
        ) from None


def make_task(family: str, seed: int, difficulty: int) -> Task:
    """The one task of ``family`` with this per-task seed and difficulty (``Task.seed`` reproduces it)."""
    check_difficulty(difficulty)
    return get_family(family).generate(seed, difficulty)


def generate_tasks(
    family: str, n: int, seed: int, difficulty_range: tuple[int, int] = (MIN_DIFFICULTY, MAX_DIFFICULTY)
) -> list[Task]:
    """``n`` tasks, difficulties uniform over the inclusive range; the same arguments give the same tasks."""
    spec = get_family(family)
    low, high = difficulty_range
    check_difficulty(low)
    check_difficulty(high)
    if low > high:
        raise TaskSpecError(f"empty difficulty range {difficulty_range}")
    if n < 0:
        raise TaskSpecError(f"n must be >= 0, got {n}")
    rng = random.Random(seed)
    tasks = []
    for _ in range(n):
        task_seed = rng.getrandbits(63)
        tasks.append(spec.generate(task_seed, rng.randint(low, high)))
    return tasks


def solve(task: Task) -> Trajectory:
    """The gold trajectory of ``task``; its tool results come from the real tools."""
    return get_family(task.family).solve(task)
