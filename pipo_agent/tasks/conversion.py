"""The ``conversion`` family: unit and price questions that need the ``lookup`` tool.

A question sums one to four terms ``quantity x factor``, where a factor is a price per kg or per item, or a
conversion factor to a common unit ("How many minutes are in 3 weeks and 4 days?"). Price questions may ask
for the total in cents (one more lookup: ``dollar in cents``) or for the change from a payment. The gold
solution looks the factors up (all in one turn when the task's ``parallel`` flag is set, else one per
turn), multiplies (calculator when both numbers are >= 10, by hand otherwise), adds the parts digit by
digit, and ends with a recap check.
"""

import random
import re
from typing import Any, Final

from pipo_agent.tasks.builder import TrajectoryBuilder
from pipo_agent.tasks.errors import SolverError
from pipo_agent.tasks.stepwise import add_steps, mul_steps, needs_calculator, sub_steps
from pipo_agent.tasks.types import AnswerKind, Task, Trajectory
from pipo_agent.tools.catalog import CONVERSIONS, GROCERIES, PriceUnit

FAMILY: Final = "conversion"
CENTS_QUERY: Final = "dollar in cents"

_ITEMS: Final = {item.plural: item for item in GROCERIES}
_CONVERSIONS: Final = {c.query: c for c in CONVERSIONS}
# Targets reached from at least two source units, for "3 weeks and 4 days in minutes".
_SHARED_TARGETS: Final = sorted(
    {c.target.name for c in CONVERSIONS if sum(d.target == c.target for d in CONVERSIONS) >= 2}
)
# "cherries: 12 dollars per kg" or "1 pound = 454 grams"
_LOOKUP_NUMBER: Final = re.compile(r"(?:: |= )(\d+) ")


def generate(seed: int, difficulty: int) -> Task:
    rng = random.Random(seed)
    parallel = rng.random() < 0.5
    meta = _unit_meta(rng, difficulty) if rng.random() < 0.4 else _price_meta(rng, difficulty)
    meta["parallel"] = parallel
    return Task(FAMILY, _question(meta), str(_answer(meta)), difficulty, seed, meta, AnswerKind.INTEGER)


def _quantity(rng: random.Random, difficulty: int) -> int:
    if difficulty == 1 or rng.random() < 0.4:
        return rng.randint(2, 9)
    return rng.randint(10, 99 if difficulty < 5 else 250)


def _unit_meta(rng: random.Random, difficulty: int) -> dict[str, Any]:
    if difficulty <= 2:
        conversion = rng.choice(CONVERSIONS)
        return {"kind": "unit", "terms": [[_quantity(rng, difficulty), conversion.query]]}
    target = rng.choice(_SHARED_TARGETS)
    sources = [c for c in CONVERSIONS if c.target.name == target]
    chosen = rng.sample(sources, min(len(sources), 2 if difficulty < 5 else 3))
    chosen.sort(key=lambda c: -c.factor)  # the larger unit first: "3 weeks and 4 days"
    return {"kind": "unit", "terms": [[_quantity(rng, difficulty), c.query] for c in chosen]}


def _price_meta(rng: random.Random, difficulty: int) -> dict[str, Any]:
    count = {1: 1, 2: 1, 3: 2, 4: rng.randint(2, 3), 5: rng.randint(3, 4)}[difficulty]
    items = rng.sample(GROCERIES, count)
    terms = [[_quantity(rng, difficulty), item.plural] for item in items]
    cents = difficulty >= 2 and rng.random() < 0.35
    total = sum(q * _ITEMS[name].price for q, name in terms)
    paid = None
    if difficulty >= 4 and not cents and rng.random() < 0.6:
        paid = next((note for note in (20, 50, 100, 200, 500) if note > total), None)
        if paid is None:
            paid = (total // 100 + rng.randint(1, 5)) * 100
    return {"kind": "price", "terms": terms, "cents": cents, "paid": paid}


def _describe(quantity: int, name: str) -> str:
    item = _ITEMS[name]
    if item.unit is PriceUnit.KILOGRAM:
        return f"{quantity} kg of {item.plural}"
    return f"{quantity} {item.plural}"


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else f"{', '.join(parts[:-1])} and {parts[-1]}"


def _question(meta: dict[str, Any]) -> str:
    terms = meta["terms"]
    if meta["kind"] == "unit":
        conversions = [_CONVERSIONS[query] for _, query in terms]
        parts = [f"{q} {c.source.plural}" for (q, _), c in zip(terms, conversions, strict=True)]
        return f"How many {conversions[0].target.plural} are in {_join(parts)}?"
    goods = _join([_describe(q, name) for q, name in terms])
    if meta["paid"] is not None:
        return f"You buy {goods} and pay with {meta['paid']} dollars. How much change do you get, in dollars?"
    currency = "cents" if meta["cents"] else "dollars"
    if len(terms) == 1:
        return f"How many {currency} do {goods} cost?"
    return f"What do {goods} cost in total, in {currency}?"


def _factor(query: str) -> int:
    factor: int = _CONVERSIONS[query].factor if query in _CONVERSIONS else _ITEMS[query].price
    return factor


def _answer(meta: dict[str, Any]) -> int:
    total: int = sum(q * _factor(query) for q, query in meta["terms"])
    if meta["kind"] == "price" and meta["cents"]:
        total *= 100
    if meta["kind"] == "price" and meta["paid"] is not None:
        total = meta["paid"] - total
    return total


def solve(task: Task) -> Trajectory:
    meta = task.meta
    terms: list[tuple[int, str]] = [(q, query) for q, query in meta["terms"]]
    is_price = meta["kind"] == "price"
    cents = is_price and bool(meta["cents"])
    paid: int | None = meta.get("paid") if is_price else None
    builder = TrajectoryBuilder(task.question)
    queries = [query for _, query in terms] + ([CENTS_QUERY] if cents else [])
    builder.think(_plan(terms, is_price, cents, paid))
    factors = _look_up(builder, queries, bool(meta["parallel"]))
    parts = _multiply(builder, terms, factors, is_price, bool(meta["parallel"]))
    recap = [f"{q} * {factors[query]} = {part}" for (q, query), part in zip(terms, parts, strict=True)]
    total = parts[0]
    for part in parts[1:]:
        text, new_total = add_steps(total, part)
        builder.think(f"Sum: {text}.")
        recap.append(f"{total} + {part} = {new_total}")
        total = new_total
    unit = "dollars" if is_price else _CONVERSIONS[terms[0][1]].target.plural
    if len(parts) > 1:
        builder.think(f"Together that is {total} {unit}.")
    if cents:
        dollars, total = total, _times_hundred(builder, total, factors[CENTS_QUERY])
        recap.append(f"{dollars} * 100 = {total}")
        unit = "cents"
    if paid is not None:
        text, change = sub_steps(paid, total)
        builder.think(f"Change: {text}.")
        recap.append(f"{paid} - {total} = {change}")
        total = change
    if str(total) != task.answer:
        raise SolverError(f"conversion solver got {total}, the task says {task.answer}")
    builder.think(f"Check: {', '.join(recap)}. All steps agree, so the answer is {total}.")
    return builder.finish(str(total))


def _plan(terms: list[tuple[int, str]], is_price: bool, cents: bool, paid: int | None) -> str:
    if is_price:
        need = f"the price of {_join([query for _, query in terms])}" + (
            " and the number of cents in a dollar" if cents else ""
        )
        steps = [f"multiply {'each quantity' if len(terms) > 1 else 'the quantity'} by its price"]
    else:
        target = _CONVERSIONS[terms[0][1]].target.plural
        sources = _join([_CONVERSIONS[query].source.name for _, query in terms])
        need = f"how many {target} are in one {sources}"
        steps = [f"multiply {'each quantity' if len(terms) > 1 else 'the quantity'} by its factor"]
    if len(terms) > 1:
        steps.append("add the parts")
    if cents:
        steps.append("convert dollars to cents")
    if paid is not None:
        steps.append(f"subtract the total from {paid} dollars")
    return f"Plan: look up {need}, then {_join(steps)}, then check."


def _look_up(builder: TrajectoryBuilder, queries: list[str], parallel: bool) -> dict[str, int]:
    """Every factor from the real ``lookup`` tool, all in one turn or one turn each."""
    if parallel and len(queries) > 1:
        builder.think("These lookups are independent, so I do them all at once.")
        results = builder.call_parallel([("lookup", query) for query in queries])
        builder.think(*(f"The catalog says {result}." for result in results))
    else:
        results = []
        for query in queries:
            builder.think(f"I look up {query}.")
            results.append(builder.call("lookup", query))
            builder.think(f"The catalog says {results[-1]}.")
    factors = {}
    for query, result in zip(queries, results, strict=True):
        match = _LOOKUP_NUMBER.search(result)
        expected = 100 if query == CENTS_QUERY else _factor(query)
        if match is None or int(match.group(1)) != expected:
            raise SolverError(f"lookup({query!r}) returned {result!r}, expected the number {expected}")
        factors[query] = expected
    return factors


def _multiply(
    builder: TrajectoryBuilder,
    terms: list[tuple[int, str]],
    factors: dict[str, int],
    is_price: bool,
    parallel: bool,
) -> list[int]:
    """Each term's ``quantity * factor``: by hand, or by the calculator (in one turn when parallel)."""
    parts: dict[int, int] = {}
    for index, (quantity, query) in enumerate(terms):
        factor = factors[query]
        label = _term_label(quantity, query, factor, is_price)
        if not needs_calculator(quantity, factor):
            text, parts[index] = mul_steps(factor, quantity)
            builder.think(f"Part {index + 1}, {label}: {text}.")
        elif index in parts:
            builder.think(
                f"Part {index + 1}, {label}: {quantity} * {factor} = {parts[index]}, from the calculator."
            )
        else:
            batch = [index]
            if parallel:
                batch += [
                    j for j, (q, name) in enumerate(terms) if j > index and needs_calculator(q, factors[name])
                ]
            expressions = [
                (f"{terms[j][0]} * {factors[terms[j][1]]}", terms[j][0] * factors[terms[j][1]]) for j in batch
            ]
            if len(batch) == 1:
                builder.think(
                    f"Part {index + 1}, {label}: both numbers are at least 10, so I use the calculator."
                )
            else:
                numbers = _join([str(j + 1) for j in batch])
                builder.think(
                    f"Parts {numbers} multiply numbers that are both at least 10, "
                    "so I ask the calculator for them in one turn."
                )
            for j, value in zip(batch, builder.calculate(expressions), strict=True):
                parts[j] = value
        unit = "dollars" if is_price else _CONVERSIONS[query].target.plural
        builder.think(f"Part {index + 1} is {parts[index]} {unit}.")
    return [parts[index] for index in range(len(terms))]


def _term_label(quantity: int, query: str, factor: int, is_price: bool) -> str:
    if is_price:
        item = _ITEMS[query]
        dollars = "dollar" if factor == 1 else "dollars"
        return f"{_describe(quantity, query)} at {factor} {dollars} per {item.unit.value}"
    conversion = _CONVERSIONS[query]
    return f"{quantity} {conversion.source.plural} at {factor} {conversion.target.plural} each"


def _times_hundred(builder: TrajectoryBuilder, dollars: int, cents_per_dollar: int) -> int:
    if needs_calculator(dollars, cents_per_dollar):
        expression = f"{dollars} * {cents_per_dollar}"
        builder.think(f"In cents: {expression}. Both numbers are at least 10, so I use the calculator.")
        return builder.calculate([(expression, dollars * cents_per_dollar)])[0]
    text, cents = mul_steps(cents_per_dollar, dollars)
    builder.think(f"In cents: {text}.")
    return cents
