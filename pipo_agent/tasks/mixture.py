"""A training mixture over families and difficulties, and length statistics of trajectories."""

import random
import statistics
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

from pipo_agent.tasks.errors import TaskSpecError
from pipo_agent.tasks.registry import get_family
from pipo_agent.tasks.types import MAX_DIFFICULTY, MIN_DIFFICULTY, Task, Trajectory

_LEVELS: Final = MAX_DIFFICULTY - MIN_DIFFICULTY + 1

# Measured with the 1024-entry tokenizer (median tokens per trajectory at difficulty 1..5): arithmetic
# 400-1040, conversion 280-880, strings 180-2550. These weights put most tokens in trajectories of a
# few hundred tokens while keeping a tail of long string traces.
DEFAULT_FAMILY_WEIGHTS: Final = MappingProxyType({"arithmetic": 0.4, "conversion": 0.3, "strings": 0.3})
DEFAULT_DIFFICULTY_WEIGHTS: Final = MappingProxyType(
    {
        "arithmetic": (0.3, 0.3, 0.2, 0.1, 0.1),
        "conversion": (0.25, 0.25, 0.2, 0.15, 0.15),
        "strings": (0.3, 0.3, 0.25, 0.1, 0.05),
    }
)


@dataclass(frozen=True, slots=True)
class TaskMix:
    """Relative weights of the families, and of difficulties 1..5 within each family."""

    family_weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_FAMILY_WEIGHTS))
    difficulty_weights: Mapping[str, tuple[float, ...]] = field(
        default_factory=lambda: dict(DEFAULT_DIFFICULTY_WEIGHTS)
    )

    def __post_init__(self) -> None:
        for name in [*self.family_weights, *self.difficulty_weights]:
            get_family(name)
        if any(weight < 0 for weight in self.family_weights.values()) or not any(
            self.family_weights.values()
        ):
            raise TaskSpecError("family weights must be non-negative with a positive sum")
        for name, weights in self.difficulty_weights.items():
            if len(weights) != _LEVELS or any(w < 0 for w in weights) or not any(weights):
                raise TaskSpecError(
                    f"{name}: need {_LEVELS} non-negative difficulty weights with a positive sum"
                )

    def difficulty_weights_of(self, family: str) -> tuple[float, ...]:
        return self.difficulty_weights.get(family, (1.0,) * _LEVELS)


def generate_mixture(n: int, seed: int, mix: TaskMix | None = None) -> list[Task]:
    """``n`` tasks drawn from ``mix`` (the default mix when None); the same arguments give the same tasks."""
    if n < 0:
        raise TaskSpecError(f"n must be >= 0, got {n}")
    mix = TaskMix() if mix is None else mix
    rng = random.Random(seed)
    names = list(mix.family_weights)
    family_weights = [mix.family_weights[name] for name in names]
    levels = list(range(MIN_DIFFICULTY, MAX_DIFFICULTY + 1))
    tasks = []
    for _ in range(n):
        family = rng.choices(names, weights=family_weights)[0]
        difficulty = rng.choices(levels, weights=mix.difficulty_weights_of(family))[0]
        tasks.append(get_family(family).generate(rng.getrandbits(63), difficulty))
    return tasks


@dataclass(frozen=True, slots=True)
class LengthStats:
    count: int
    median: float
    p90: float
    max: int
    total: int


def length_stats(trajectories: Iterable[Trajectory], measure: Callable[[str], int] = len) -> LengthStats:
    """Lengths of rendered trajectories; ``measure`` is ``len`` (characters) or a token counter."""
    lengths = sorted(measure(trajectory.render()) for trajectory in trajectories)
    if not lengths:
        raise TaskSpecError("length_stats needs at least one trajectory")
    return LengthStats(
        count=len(lengths),
        median=statistics.median(lengths),
        p90=lengths[min(len(lengths) - 1, int(0.9 * len(lengths)))],
        max=lengths[-1],
        total=sum(lengths),
    )
