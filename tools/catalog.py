"""The ``lookup`` tool: grocery prices and unit conversion factors from a fixed built-in catalog.

Queries are case-insensitive and tolerate plurals and a few abbreviations (``kg``, ``lb``, ``oz``, ...):
``"Cherries"``, ``"cherry"``, ``"pounds in grams"``, ``"pound to grams"`` and ``"grams per pound"`` all work.
Answers are one line: ``"cherries: 12 dollars per kg"``, ``"lemons: 1 dollar per item"`` or
``"1 pound = 454 grams"``. Every price and factor is a whole number; ``pound in grams`` and
``mile in meters`` are rounded (454 and 1609).

An unknown query raises :class:`UnknownItemError` (a ``ToolInputError``) whose message names the closest
known queries; an agent shows that message to the model as the tool's response, so it can retry.
"""

import difflib
import enum
import re
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from .errors import ToolInputError, UnknownItemError

LOOKUP_SCHEMA: Final[dict[str, Any]] = {
    "type": "function",
    "function": {
        "name": "lookup",
        "description": "Look up a grocery price in dollars or a unit conversion factor.",
        "parameters": {
            "type": "object",
            "properties": {
                "item": {
                    "type": "string",
                    "description": "A grocery item such as 'apples', or a conversion 'UNIT in UNIT' such as "
                    "'pound in grams'.",
                }
            },
            "required": ["item"],
        },
    },
}


_T = TypeVar("_T")


class PriceUnit(enum.Enum):
    KILOGRAM = "kg"
    ITEM = "item"


@dataclass(frozen=True, slots=True)
class GroceryItem:
    name: str
    plural: str
    price: int  # whole dollars per ``unit``
    unit: PriceUnit


@dataclass(frozen=True, slots=True)
class Unit:
    name: str
    plural: str
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Conversion:
    source: Unit
    target: Unit
    factor: int  # one ``source`` is ``factor`` ``target``s

    @property
    def query(self) -> str:
        return f"{self.source.name} in {self.target.plural}"


def _goods(unit: PriceUnit, rows: str) -> tuple[GroceryItem, ...]:
    items = []
    for row in rows.strip().splitlines():
        name, plural, price = (part.strip() for part in row.split(","))
        items.append(GroceryItem(name, plural, int(price), unit))
    return tuple(items)


GROCERIES: Final[tuple[GroceryItem, ...]] = _goods(
    PriceUnit.KILOGRAM,
    """
    apple, apples, 3
    banana, bananas, 2
    cherry, cherries, 12
    grape, grapes, 6
    orange, oranges, 3
    pear, pears, 4
    peach, peaches, 5
    plum, plums, 4
    strawberry, strawberries, 9
    blueberry, blueberries, 14
    raspberry, raspberries, 16
    apricot, apricots, 7
    tomato, tomatoes, 4
    potato, potatoes, 2
    carrot, carrots, 2
    onion, onions, 2
    garlic, garlic, 10
    mushroom, mushrooms, 9
    pepper, peppers, 6
    zucchini, zucchini, 4
    broccoli, broccoli, 5
    spinach, spinach, 8
    rice, rice, 3
    flour, flour, 2
    sugar, sugar, 2
    salt, salt, 1
    coffee, coffee, 18
    tea, tea, 25
    butter, butter, 11
    cheese, cheese, 15
    chicken, chicken, 9
    beef, beef, 17
    pork, pork, 12
    salmon, salmon, 24
    shrimp, shrimp, 21
    almond, almonds, 14
    walnut, walnuts, 16
    lentil, lentils, 4
    pasta, pasta, 4
    oats, oats, 3
    chocolate, chocolate, 13
    """,
) + _goods(
    PriceUnit.ITEM,
    """
    lemon, lemons, 1
    lime, limes, 1
    mango, mangoes, 2
    kiwi, kiwis, 1
    pineapple, pineapples, 4
    watermelon, watermelons, 6
    melon, melons, 4
    avocado, avocados, 2
    cucumber, cucumbers, 1
    lettuce, lettuces, 2
    cabbage, cabbages, 3
    pumpkin, pumpkins, 7
    egg, eggs, 1
    baguette, baguettes, 3
    coconut, coconuts, 3
    """,
)

_UNITS: Final = {
    unit.name: unit
    for unit in (
        Unit("pound", "pounds", ("lb", "lbs")),
        Unit("ounce", "ounces", ("oz",)),
        Unit("gram", "grams", ("g",)),
        Unit("kilogram", "kilograms", ("kg", "kilo", "kilos")),
        Unit("tonne", "tonnes", ("ton", "tons")),
        Unit("mile", "miles", ("mi",)),
        Unit("yard", "yards", ("yd",)),
        Unit("foot", "feet", ("ft",)),
        Unit("inch", "inches", ("in",)),
        Unit("kilometer", "kilometers", ("km", "kilometre", "kilometres")),
        Unit("meter", "meters", ("m", "metre", "metres")),
        Unit("centimeter", "centimeters", ("cm", "centimetre", "centimetres")),
        Unit("millimeter", "millimeters", ("mm", "millimetre", "millimetres")),
        Unit("week", "weeks", ("wk",)),
        Unit("year", "years", ("yr",)),
        Unit("day", "days"),
        Unit("hour", "hours", ("hr", "h")),
        Unit("minute", "minutes", ("min",)),
        Unit("second", "seconds", ("sec", "s")),
        Unit("gallon", "gallons", ("gal",)),
        Unit("quart", "quarts", ("qt",)),
        Unit("pint", "pints", ("pt",)),
        Unit("liter", "liters", ("l", "litre", "litres")),
        Unit("milliliter", "milliliters", ("ml", "millilitre", "millilitres")),
        Unit("dollar", "dollars", ("usd",)),
        Unit("cent", "cents"),
    )
}


def _conversions(rows: str) -> tuple[Conversion, ...]:
    table = []
    for row in rows.strip().splitlines():
        source, target, factor = row.split()
        table.append(Conversion(_UNITS[source], _UNITS[target], int(factor)))
    return tuple(table)


CONVERSIONS: Final[tuple[Conversion, ...]] = _conversions(
    """
    pound gram 454
    pound ounce 16
    ounce gram 28
    kilogram gram 1000
    tonne kilogram 1000
    mile foot 5280
    mile yard 1760
    mile meter 1609
    yard foot 3
    yard inch 36
    foot inch 12
    kilometer meter 1000
    meter centimeter 100
    meter millimeter 1000
    centimeter millimeter 10
    hour minute 60
    hour second 3600
    minute second 60
    day hour 24
    day minute 1440
    day second 86400
    week day 7
    week hour 168
    week minute 10080
    year day 365
    year week 52
    gallon quart 4
    gallon pint 8
    quart pint 2
    liter milliliter 1000
    dollar cent 100
    """
)

_ITEM_INDEX: Final = {key: item for item in GROCERIES for key in (item.name, item.plural)}
_UNIT_INDEX: Final = {
    key: unit for unit in _UNITS.values() for key in (unit.name, unit.plural, *unit.aliases)
}
_CONVERSION_INDEX: Final = {(c.source.name, c.target.name): c for c in CONVERSIONS}
_KNOWN_QUERIES: Final = tuple(item.plural for item in GROCERIES) + tuple(c.query for c in CONVERSIONS)
_CONVERSION_QUERY: Final = re.compile(r"^(?:1 |one |a |an )?([a-z]+) (in|to|per) (a |an |one |1 )?([a-z]+)$")


def lookup(item: str) -> str:
    """A grocery price or a conversion factor as one line of text; raises ``UnknownItemError``."""
    if not isinstance(item, str):
        raise ToolInputError("item must be a string")
    query = " ".join(item.lower().replace("-", " ").strip(" .?!'\"").split())
    match = _CONVERSION_QUERY.match(query)
    if match:
        first, word, article, second = match.groups()
        # "grams per pound" and "grams in a pound" name the target unit first.
        source, target = (second, first) if word == "per" or article else (first, second)
        conversion = _find_conversion(source, target)
        if conversion is not None:
            return f"1 {conversion.source.name} = {conversion.factor} {conversion.target.plural}"
    grocery = _find_item(query)
    if grocery is not None:
        dollars = "dollar" if grocery.price == 1 else "dollars"
        return f"{grocery.plural}: {grocery.price} {dollars} per {grocery.unit.value}"
    suggestions = tuple(difflib.get_close_matches(query, _KNOWN_QUERIES, n=3, cutoff=0.6))
    hint = (
        f"close matches: {', '.join(suggestions)}"
        if suggestions
        else "ask for a grocery item such as 'apples' or a conversion such as 'pound in grams'"
    )
    raise UnknownItemError(f"unknown item {item!r}; {hint}", suggestions)


def _find_conversion(source: str, target: str) -> Conversion | None:
    source_unit = _resolve(source, _UNIT_INDEX)
    target_unit = _resolve(target, _UNIT_INDEX)
    if source_unit is None or target_unit is None:
        return None
    return _CONVERSION_INDEX.get((source_unit.name, target_unit.name))


def _find_item(query: str) -> GroceryItem | None:
    for prefix in ("", "price of ", "a ", "an ", "1 ", "kg of ", "1 kg of "):
        if query.startswith(prefix):
            found = _resolve(query.removeprefix(prefix), _ITEM_INDEX)
            if found is not None:
                return found
    return None


def _resolve(name: str, index: dict[str, _T]) -> _T | None:
    """Find ``name`` as written, then with an English plural ending of its last word removed or added."""
    head, _, last = name.rpartition(" ")
    prefix = f"{head} " if head else ""
    candidates = [last]
    if last.endswith("ies"):
        candidates += [last[:-3] + "y", last[:-1]]
    if last.endswith("es"):
        candidates.append(last[:-2])
    if last.endswith("s"):
        candidates.append(last[:-1])
    candidates.append(last + "s")  # names that exist only in the plural, like "oats"
    for candidate in candidates:
        found = index.get(prefix + candidate)
        if found is not None:
            return found
    return None
