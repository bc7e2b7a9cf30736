"""Story settings for the arithmetic word problems: nouns and sentence templates per event kind.

Templates use ``{a}`` and ``{b}`` (a count of groups and the size of each), ``{n}`` (an amount) and ``{k}`` (a
multiplier or divisor). Every theme counts one kind of thing (``unit``) through the whole story.
"""

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True, slots=True)
class Theme:
    name: str
    unit: str  # the counted thing, plural: "bottles"
    groups: str  # what holds ``b`` units each, plural: "crates"
    places: str  # identical copies of the whole setting, plural: "warehouses"
    shares: str  # what the total is split among, plural: "stores"
    share: str  # singular of ``shares``
    start: tuple[str, ...]
    add: tuple[str, ...]
    sub: tuple[str, ...]
    add_group: tuple[str, ...]
    sub_group: tuple[str, ...]
    scale: tuple[str, ...]
    split: tuple[str, ...]
    question_now: str
    question_all: str  # after a ``scale`` event


THEMES: Final[tuple[Theme, ...]] = (
    Theme(
        name="warehouse",
        unit="bottles",
        groups="crates",
        places="warehouses",
        shares="stores",
        share="store",
        start=(
            "A warehouse holds {a} crates with {b} bottles in each crate.",
            "There are {a} crates in a warehouse, and every crate contains {b} bottles.",
        ),
        add=("A truck delivers {n} more bottles.", "A shop returns {n} bottles to the warehouse."),
        sub=("{n} bottles are shipped to a shop.", "{n} bottles break and are thrown away."),
        add_group=(
            "A delivery brings {a} more crates with {b} bottles each.",
            "Then {a} new crates arrive, each holding {b} bottles.",
        ),
        sub_group=(
            "Then {a} crates of {b} bottles each are sent to a supermarket.",
            "A customer takes away {a} crates, each with {b} bottles.",
        ),
        scale=(
            "The company owns {k} identical warehouses like this one.",
            "There are {k} warehouses exactly like this one.",
        ),
        split=(
            "Finally all the bottles are shared equally among {k} stores.",
            "At the end the bottles are divided equally between {k} stores.",
        ),
        question_now="How many bottles are in the warehouse now?",
        question_all="How many bottles are there in all the warehouses together now?",
    ),
    Theme(
        name="factory",
        unit="hours",
        groups="workers",
        places="factories",
        shares="projects",
        share="project",
        start=(
            "A factory has {a} workers, and each worker works {b} hours this month.",
            "This month {a} workers each put in {b} hours at a factory.",
        ),
        add=("The factory adds {n} hours of overtime.", "Managers contribute another {n} hours."),
        sub=("{n} hours are lost to a power cut.", "Training takes away {n} of those hours."),
        add_group=(
            "Then {a} temporary workers join, each working {b} hours.",
            "{a} new workers are hired, and each of them works {b} hours.",
        ),
        sub_group=(
            "{a} workers go on leave, each missing {b} hours.",
            "Then {a} workers fall ill, and each loses {b} hours.",
        ),
        scale=("The company runs {k} identical factories.", "There are {k} factories just like this one."),
        split=(
            "Finally the hours are split equally among {k} projects.",
            "In the end the hours are shared equally by {k} projects.",
        ),
        question_now="How many hours of work are there in total?",
        question_all="How many hours of work are there across all the factories?",
    ),
    Theme(
        name="train",
        unit="passengers",
        groups="cars",
        places="trains",
        shares="buses",
        share="bus",
        start=(
            "A train has {a} cars with {b} passengers in each car.",
            "There are {b} passengers in each of the {a} cars of a train.",
        ),
        add=("At the next station {n} more passengers get on.", "Then {n} passengers board the train."),
        sub=("{n} passengers get off at the next station.", "At a stop, {n} passengers leave the train."),
        add_group=(
            "{a} more cars are attached, each carrying {b} passengers.",
            "Then {a} extra cars join the train with {b} passengers in each.",
        ),
        sub_group=(
            "Then {a} cars with {b} passengers each are detached.",
            "{a} cars, each holding {b} passengers, leave the train at a junction.",
        ),
        scale=(
            "The railway runs {k} identical trains like this one.",
            "There are {k} trains exactly like this one today.",
        ),
        split=(
            "At the last station the passengers are shared equally among {k} buses.",
            "Finally the passengers split equally into {k} buses.",
        ),
        question_now="How many passengers are on the train now?",
        question_all="How many passengers are on all the trains together?",
    ),
    Theme(
        name="farm",
        unit="eggs",
        groups="hens",
        places="farms",
        shares="boxes",
        share="box",
        start=(
            "A farm has {a} hens, and each hen lays {b} eggs a year.",
            "Each of the {a} hens on a farm lays {b} eggs in a year.",
        ),
        add=("The farmer also buys {n} eggs from a neighbour.", "A neighbour gives the farm {n} eggs."),
        sub=("{n} eggs are broken.", "The family eats {n} of the eggs."),
        add_group=(
            "Then {a} new hens arrive, each laying {b} eggs a year.",
            "The farmer buys {a} more hens that lay {b} eggs a year each.",
        ),
        sub_group=(
            "{a} hens are sold, and each of them would have laid {b} eggs.",
            "A fox takes {a} hens, each of which laid {b} eggs a year.",
        ),
        scale=(
            "There are {k} identical farms in the valley.",
            "The cooperative has {k} farms just like this one.",
        ),
        split=(
            "All the eggs are packed equally into {k} boxes.",
            "Finally the eggs are divided equally into {k} boxes.",
        ),
        question_now="How many eggs does the farm have for the year?",
        question_all="How many eggs do all the farms have together for the year?",
    ),
    Theme(
        name="library",
        unit="books",
        groups="shelves",
        places="libraries",
        shares="reading rooms",
        share="reading room",
        start=(
            "A library has {a} shelves with {b} books on each shelf.",
            "There are {b} books on every one of the {a} shelves of a library.",
        ),
        add=("It receives {n} donated books.", "The library buys {n} new books."),
        sub=("{n} old books are removed.", "{n} books are lent out and not returned."),
        add_group=(
            "Then {a} new shelves with {b} books each are added.",
            "The library installs {a} more shelves and puts {b} books on each.",
        ),
        sub_group=(
            "{a} shelves holding {b} books each are moved to storage.",
            "Then {a} shelves with {b} books each are given to a school.",
        ),
        scale=("The city has {k} identical libraries.", "There are {k} libraries exactly like this one."),
        split=(
            "Finally the books are divided equally among {k} reading rooms.",
            "In the end the books are shared equally by {k} reading rooms.",
        ),
        question_now="How many books does the library have now?",
        question_all="How many books do all the libraries have together now?",
    ),
    Theme(
        name="bakery",
        unit="cookies",
        groups="trays",
        places="bakeries",
        shares="boxes",
        share="box",
        start=(
            "A bakery bakes {a} trays with {b} cookies on each tray.",
            "There are {b} cookies on each of the {a} trays in a bakery.",
        ),
        add=("The baker makes {n} more cookies.", "A second oven adds {n} cookies."),
        sub=("{n} cookies are sold in the morning.", "{n} cookies burn and are thrown away."),
        add_group=(
            "Then {a} more trays with {b} cookies each come out of the oven.",
            "The baker fills {a} extra trays with {b} cookies each.",
        ),
        sub_group=(
            "{a} trays of {b} cookies each are delivered to a cafe.",
            "A school orders {a} trays with {b} cookies on each.",
        ),
        scale=("The chain has {k} identical bakeries.", "There are {k} bakeries just like this one."),
        split=(
            "Finally the cookies are packed equally into {k} boxes.",
            "At closing time the cookies are shared equally among {k} boxes.",
        ),
        question_now="How many cookies does the bakery have now?",
        question_all="How many cookies do all the bakeries have together?",
    ),
    Theme(
        name="stadium",
        unit="seats",
        groups="rows",
        places="stadiums",
        shares="ticket zones",
        share="ticket zone",
        start=(
            "A stadium has {a} rows with {b} seats in each row.",
            "Each of the {a} rows of a stadium has {b} seats.",
        ),
        add=("Workers install {n} extra seats.", "A new box adds {n} seats."),
        sub=("{n} seats are broken and closed.", "{n} seats are removed for cameras."),
        add_group=(
            "A new stand adds {a} rows of {b} seats.",
            "Then {a} more rows with {b} seats each are built.",
        ),
        sub_group=(
            "{a} rows of {b} seats are closed for repairs.",
            "Then {a} rows with {b} seats each are taken out.",
        ),
        scale=("The league has {k} identical stadiums.", "There are {k} stadiums exactly like this one."),
        split=(
            "Finally the seats are divided equally among {k} ticket zones.",
            "The seats are then split equally into {k} ticket zones.",
        ),
        question_now="How many seats does the stadium have now?",
        question_all="How many seats do all the stadiums have together?",
    ),
    Theme(
        name="orchard",
        unit="apples",
        groups="trees",
        places="orchards",
        shares="crates",
        share="crate",
        start=(
            "An orchard has {a} trees, and each tree gives {b} apples.",
            "Each of the {a} trees in an orchard gives {b} apples.",
        ),
        add=("The owner buys {n} more apples at a market.", "A neighbour brings {n} apples."),
        sub=("{n} apples are eaten by birds.", "{n} apples are too small and are thrown away."),
        add_group=(
            "Then {a} young trees give {b} apples each.",
            "{a} more trees are harvested, with {b} apples from each.",
        ),
        sub_group=(
            "{a} trees are sick, and their {b} apples each are lost.",
            "Then {a} trees with {b} apples each are sold to a juice maker.",
        ),
        scale=("The family has {k} identical orchards.", "There are {k} orchards just like this one."),
        split=(
            "Finally the apples are packed equally into {k} crates.",
            "All the apples are then divided equally among {k} crates.",
        ),
        question_now="How many apples are there now?",
        question_all="How many apples are there in all the orchards together?",
    ),
)

THEMES_BY_NAME: Final = {theme.name: theme for theme in THEMES}
