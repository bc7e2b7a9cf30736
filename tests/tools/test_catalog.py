"""The lookup tool: prices, conversion factors, plurals, and helpful errors for unknown items."""

import pytest

from pipo_agent.tools import LOOKUP_SCHEMA, ToolInputError, UnknownItemError, lookup
from pipo_agent.tools.catalog import CONVERSIONS, GROCERIES, PriceUnit


def test_catalog_size_and_whole_numbers() -> None:
    assert len(GROCERIES) >= 50
    assert len(CONVERSIONS) >= 20
    assert {item.unit for item in GROCERIES} == {PriceUnit.KILOGRAM, PriceUnit.ITEM}
    assert all(item.price > 0 for item in GROCERIES)
    assert all(conversion.factor > 1 for conversion in CONVERSIONS)


@pytest.mark.parametrize(
    ("query", "answer"),
    [
        ("cherries", "cherries: 12 dollars per kg"),
        ("Cherry", "cherries: 12 dollars per kg"),
        ("  CHERRIES? ", "cherries: 12 dollars per kg"),
        ("peach", "peaches: 5 dollars per kg"),
        ("tomatoes", "tomatoes: 4 dollars per kg"),
        ("mangos", "mangoes: 2 dollars per item"),
        ("lemon", "lemons: 1 dollar per item"),
        ("oat", "oats: 3 dollars per kg"),
        ("price of apples", "apples: 3 dollars per kg"),
        ("pound in grams", "1 pound = 454 grams"),
        ("Pounds in grams", "1 pound = 454 grams"),
        ("pound to grams", "1 pound = 454 grams"),
        ("grams per pound", "1 pound = 454 grams"),
        ("grams in a pound", "1 pound = 454 grams"),
        ("day in minutes", "1 day = 1440 minutes"),
        ("days in minutes", "1 day = 1440 minutes"),
        ("feet in inches", "1 foot = 12 inches"),
        ("kg in g", "1 kilogram = 1000 grams"),
        ("dollar in cents", "1 dollar = 100 cents"),
    ],
)
def test_lookups(query: str, answer: str) -> None:
    assert lookup(query) == answer


def test_every_entry_is_reachable_by_its_canonical_query() -> None:
    for item in GROCERIES:
        assert lookup(item.plural).startswith(f"{item.plural}: {item.price} ")
        assert lookup(item.name) == lookup(item.plural)
    for conversion in CONVERSIONS:
        assert (
            lookup(conversion.query)
            == f"1 {conversion.source.name} = {conversion.factor} {conversion.target.plural}"
        )


def test_unknown_item_suggests_close_matches() -> None:
    with pytest.raises(UnknownItemError, match="close matches: cherries") as caught:
        lookup("cheries")
    assert "cherries" in caught.value.suggestions
    with pytest.raises(UnknownItemError, match="pound in grams"):
        lookup("pound in kilograms")


def test_unknown_item_without_close_matches_explains_the_query_forms() -> None:
    with pytest.raises(UnknownItemError, match="conversion such as 'pound in grams'") as caught:
        lookup("quantum flux")
    assert caught.value.suggestions == ()


def test_errors_are_tool_input_errors() -> None:
    with pytest.raises(ToolInputError):
        lookup("")
    with pytest.raises(ToolInputError):
        lookup(3)  # type: ignore[arg-type]


def test_schema() -> None:
    function = LOOKUP_SCHEMA["function"]
    assert function["name"] == "lookup"
    assert function["parameters"]["required"] == ["item"]
