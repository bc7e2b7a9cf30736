"""The ``arithmetic`` family: multi-step word problems with 2–6 operations.

A story starts with ``a`` groups of ``b`` units and then changes the count with events: add or subtract an
amount, add or remove more groups, multiply by identical copies of the setting, and (last) share equally.
Difficulty d gives d + 1 operations and larger numbers. The gold solution writes a plan, does additions,
subtractions and products with a single-digit factor digit by digit, sends every product of two factors
>= 10 (and every division by a divisor >= 10) to the calculator, and ends with a recap check. When the
task's ``parallel`` flag is set, independent products are requested together in one turn.
"""

import enum
import random
from dataclasses import dataclass
from typing import Any, Final, assert_never

from pipo_agent.tasks.arithmetic_themes import THEMES, THEMES_BY_NAME, Theme
from pipo_agent.tasks.builder import TrajectoryBuilder
from pipo_agent.tasks.errors import SolverError
from pipo_agent.tasks.stepwise import add_steps, div_steps, mul_steps, needs_calculator, sub_steps
from pipo_agent.tasks.types import AnswerKind, Task, Trajectory

FAMILY: Final = "arithmetic"

# (min, max) of added or subtracted amounts per difficulty 1..5.
_AMOUNTS: Final = {1: (10, 99), 2: (10, 999), 3: (100, 999), 4: (100, 9999), 5: (100, 9999)}


class EventKind(enum.Enum):
    START = "start"  # a groups of b units
    ADD = "add"
    SUB = "sub"
    ADD_GROUP = "add_group"  # a more groups of b units
    SUB_GROUP = "sub_group"
    SCALE = "scale"  # k identical copies of the whole setting
    SPLIT = "split"  # shared equally among k (always exact, always last)


@dataclass(frozen=True, slots=True)
class Event:
    kind: EventKind
    x: int
    y: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "x": self.x, "y": self.y}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Event":
        return cls(EventKind(data["kind"]), data["x"], data["y"])


def generate(seed: int, difficulty: int) -> Task:
    rng = random.Random(seed)
    theme = rng.choice(THEMES)
    a, b = _factor_pair(rng, difficulty)
    events = [Event(EventKind.START, a, b)]
    total = a * b
    ops_left = difficulty
    while ops_left > 0:
        event = _next_event(rng, difficulty, total, ops_left, events)
        events.append(event)
        total = _apply(event, total)
        ops_left -= 2 if event.kind in (EventKind.ADD_GROUP, EventKind.SUB_GROUP) else 1
    meta = {"theme": theme.name, "events": [e.to_json() for e in events], "parallel": rng.random() < 0.5}
    return Task(FAMILY, _question(rng, theme, events), str(total), difficulty, seed, meta, AnswerKind.INTEGER)


def _factor_pair(rng: random.Random, difficulty: int) -> tuple[int, int]:
    wide = 999 if difficulty >= 3 else 99
    if rng.random() < 0.35:
        pair = (rng.randint(2, 9), rng.randint(12, wide))
    elif difficulty >= 4 and rng.random() < 0.5:
        pair = (rng.randint(11, 99), rng.randint(100, 999))
    else:
        pair = (rng.randint(11, 99), rng.randint(11, 99))
    return pair if rng.random() < 0.5 else (pair[1], pair[0])


def _next_event(rng: random.Random, difficulty: int, total: int, ops_left: int, events: list[Event]) -> Event:
    low, high = _AMOUNTS[difficulty]
    options: list[tuple[EventKind, int]] = [(EventKind.ADD, 3)]
    if total > 20:
        options.append((EventKind.SUB, 3))
    if ops_left >= 2:
        options += [(EventKind.ADD_GROUP, 2), (EventKind.SUB_GROUP, 1)]
    if all(e.kind is not EventKind.SCALE for e in events):
        options.append((EventKind.SCALE, 1))
    divisors = [k for k in range(2, 16) if total % k == 0]
    if ops_left == 1 and divisors:
        options.append((EventKind.SPLIT, 2))
    kind = rng.choices([k for k, _ in options], weights=[w for _, w in options])[0]
    if kind is EventKind.SUB:
        top = min(high, total - 1)
        return Event(kind, rng.randint(min(low, top), top))
    if kind is EventKind.SUB_GROUP:
        for _ in range(10):
            a, b = _factor_pair(rng, difficulty)
            if a * b < total:
                return Event(kind, a, b)
        kind = EventKind.ADD_GROUP
    if kind is EventKind.ADD_GROUP:
        return Event(kind, *_factor_pair(rng, difficulty))
    if kind is EventKind.SCALE:
        return Event(kind, rng.randint(2, 9) if rng.random() < 0.6 else rng.randint(10, 30))
    if kind is EventKind.SPLIT:
        return Event(kind, rng.choice(divisors))
    return Event(EventKind.ADD, rng.randint(low, high))


def _apply(event: Event, total: int) -> int:
    match event.kind:
        case EventKind.START:
            assert event.y is not None
            return event.x * event.y
        case EventKind.ADD:
            return total + event.x
        case EventKind.SUB:
            return total - event.x
        case EventKind.ADD_GROUP | EventKind.SUB_GROUP:
            assert event.y is not None
            sign = 1 if event.kind is EventKind.ADD_GROUP else -1
            return total + sign * event.x * event.y
        case EventKind.SCALE:
            return total * event.x
        case EventKind.SPLIT:
            return total // event.x
        case _:
            assert_never(event.kind)


def _question(rng: random.Random, theme: Theme, events: list[Event]) -> str:
    templates = {
        EventKind.START: theme.start,
        EventKind.ADD: theme.add,
        EventKind.SUB: theme.sub,
        EventKind.ADD_GROUP: theme.add_group,
        EventKind.SUB_GROUP: theme.sub_group,
        EventKind.SCALE: theme.scale,
        EventKind.SPLIT: theme.split,
    }
    sentences = []
    scaled = False
    for event in events:
        values = {"a": event.x, "b": event.y, "n": event.x, "k": event.x}
        sentence = rng.choice(templates[event.kind]).format(**values)
        if scaled and event.kind is not EventKind.SPLIT:
            sentence = f"Across all the {theme.places}, {sentence[0].lower()}{sentence[1:]}"
        scaled = scaled or event.kind is EventKind.SCALE
        sentences.append(sentence)
    last = events[-1]
    if last.kind is EventKind.SPLIT:
        ask = f"How many {theme.unit} does each {theme.share} get?"
    else:
        ask = theme.question_all if scaled else theme.question_now
    return " ".join([*sentences, ask])


class Op(enum.Enum):
    MUL = "*"
    ADD = "+"
    SUB = "-"
    DIV = "/"


@dataclass(frozen=True, slots=True)
class Step:
    """One operation. ``left`` None means the running total; ``right`` None means the product computed by
    the step before (a group's size). ``after`` states the result (``{r}``); ``sets_total`` is False only
    for a group's product."""

    op: Op
    left: int | None
    right: int | None
    plan: str
    after: str
    sets_total: bool = True


def _steps(theme: Theme, events: list[Event]) -> list[Step]:
    unit = theme.unit
    steps: list[Step] = []
    for event in events:
        match event.kind:
            case EventKind.START:
                plan = (
                    f"Start: {event.x} {theme.groups} with {event.y} {unit} each, so {event.x} * {event.y}."
                )
                steps.append(Step(Op.MUL, event.x, event.y, plan, f"That gives {{r}} {unit} to start."))
            case EventKind.ADD:
                steps.append(
                    Step(Op.ADD, None, event.x, f"Add {event.x} {unit}.", f"Now there are {{r}} {unit}.")
                )
            case EventKind.SUB:
                plan = f"Subtract {event.x} {unit}."
                steps.append(Step(Op.SUB, None, event.x, plan, f"Now there are {{r}} {unit}."))
            case EventKind.ADD_GROUP | EventKind.SUB_GROUP:
                plan = f"{event.x} {theme.groups} with {event.y} {unit} each: {event.x} * {event.y}."
                steps.append(Step(Op.MUL, event.x, event.y, plan, f"That is {{r}} {unit}.", sets_total=False))
                adding = event.kind is EventKind.ADD_GROUP
                plan = f"{'Add' if adding else 'Subtract'} that product."
                steps.append(
                    Step(Op.ADD if adding else Op.SUB, None, None, plan, f"Now there are {{r}} {unit}.")
                )
            case EventKind.SCALE:
                plan = f"Multiply by the {event.x} {theme.places}."
                after = f"Across the {event.x} {theme.places} that makes {{r}} {unit}."
                steps.append(Step(Op.MUL, None, event.x, plan, after))
            case EventKind.SPLIT:
                plan = f"Divide equally among the {event.x} {theme.shares}."
                steps.append(Step(Op.DIV, None, event.x, plan, f"Each {theme.share} gets {{r}} {unit}."))
            case _:
                assert_never(event.kind)
    return steps


def solve(task: Task) -> Trajectory:
    theme = THEMES_BY_NAME[task.meta["theme"]]
    steps = _steps(theme, [Event.from_json(e) for e in task.meta["events"]])
    builder = TrajectoryBuilder(task.question)
    builder.think(f"I need to track the number of {theme.unit}. Plan:")
    builder.think(*(f"{number}. {step.plan}" for number, step in enumerate(steps, start=1)))
    # Products of two literals do not depend on the running total: in parallel mode, the first time one
    # needs the calculator, all of them are requested in the same turn.
    independent = [
        index
        for index, step in enumerate(steps)
        if step.left is not None
        and step.right is not None
        and _uses_calculator(step.op, step.left, step.right)
    ]
    known: dict[int, int] = {}
    recap: list[str] = []
    total = previous = 0
    for index, step in enumerate(steps):
        left = total if step.left is None else step.left
        right = previous if step.right is None else step.right
        expression = f"{left} {step.op.value} {right}"
        if not _uses_calculator(step.op, left, right):
            text, result = _by_hand(step.op, left, right)
            builder.think(f"Step {index + 1}: {text}.")
        elif index in known:
            result = known[index]
            builder.think(f"Step {index + 1}: {expression} = {result}, from the calculator.")
        else:
            batch = [(index, expression, _value(step.op, left, right))]
            if task.meta["parallel"] and index in independent:
                batch += [
                    (j, f"{steps[j].left} * {steps[j].right}", _value(Op.MUL, steps[j].left, steps[j].right))
                    for j in independent
                    if j != index and j not in known
                ]
            known.update(_ask_calculator(builder, step.op, batch))
            result = known[index]
        recap.append(f"{expression} = {result}")
        builder.think(step.after.format(r=result))
        previous = result
        if step.sets_total:
            total = result
    if str(total) != task.answer:
        raise SolverError(f"arithmetic solver got {total}, the task says {task.answer}")
    builder.think(f"Check: {', '.join(recap)}. All steps agree, so the answer is {total}.")
    return builder.finish(str(total))


def _uses_calculator(op: Op, left: int, right: int) -> bool:
    if op is Op.MUL:
        return needs_calculator(left, right)
    return op is Op.DIV and right >= 10


def _value(op: Op, left: int | None, right: int | None) -> int:
    assert left is not None and right is not None
    match op:
        case Op.MUL:
            return left * right
        case Op.ADD:
            return left + right
        case Op.SUB:
            return left - right
        case Op.DIV:
            return left // right
        case _:
            assert_never(op)


def _by_hand(op: Op, left: int, right: int) -> tuple[str, int]:
    match op:
        case Op.MUL:
            return mul_steps(left, right)
        case Op.ADD:
            return add_steps(left, right)
        case Op.SUB:
            return sub_steps(left, right)
        case Op.DIV:
            return div_steps(left, right)
        case _:
            assert_never(op)


def _ask_calculator(builder: TrajectoryBuilder, op: Op, batch: list[tuple[int, str, int]]) -> dict[int, int]:
    """One assistant turn calling the calculator for each ``(step index, expression, expected)``."""
    first, expression, _ = batch[0]
    if len(batch) == 1:
        reason = "The divisor is at least 10" if op is Op.DIV else "Both numbers are at least 10"
        builder.think(f"Step {first + 1}: {expression}. {reason}, so I use the calculator.")
    else:
        numbers = ", ".join(str(index + 1) for index, _, _ in batch[:-1]) + f" and {batch[-1][0] + 1}"
        expressions = "; ".join(expression for _, expression, _ in batch)
        builder.think(
            f"Steps {numbers} multiply numbers that are both at least 10 and do not depend on earlier results, "
            f"so I ask the calculator for them in one turn: {expressions}."
        )
    values = builder.calculate([(expression, expected) for _, expression, expected in batch])
    return {index: value for (index, _, _), value in zip(batch, values, strict=True)}
