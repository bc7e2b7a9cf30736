"""The ``strings`` family: exact string and list manipulation with long, element-by-element traces.

Operations: reverse the letters of a string, reverse a list, sort numbers (grouped by tens, then by last
digit), sort words (grouped by first letter), count a letter in a text (each word spelled with the letter
in capitals), remove duplicates keeping order, take every k-th item, and write words in capitals joined by a
separator. Difficulty sets the size: from 3–6 items at 1 to 100–250 at 5 (scaled down for operations whose
trace costs more per item), so traces run from tens to a few thousand tokens. No tools are offered.

Canonical answers: lists are their items separated by one space (``"3 7 12"``), strings are exact
(``"tenalp"``, ``"APPLE-PEAR"``), counts are integers. Long traces write ten items per line.
"""

import enum
import random
from collections.abc import Callable, Sequence
from typing import Any, Final, assert_never

from pipo_agent.tasks.builder import TrajectoryBuilder
from pipo_agent.tasks.errors import SolverError
from pipo_agent.tasks.types import AnswerKind, Task, Trajectory
from pipo_agent.tasks.vocabulary import WORDS

FAMILY: Final = "strings"

_SIZES: Final = {1: (3, 6), 2: (7, 15), 3: (16, 45), 4: (46, 120), 5: (121, 300)}
_PER_LINE: Final = 10
_SEPARATORS: Final = ("-", "_", "+", "/", ".")
_COUNTED_LETTERS: Final = "aeiorstnl"


class StringOp(enum.Enum):
    REVERSE_LETTERS = "reverse_letters"
    REVERSE_LIST = "reverse_list"
    SORT_NUMBERS = "sort_numbers"
    SORT_WORDS = "sort_words"
    COUNT_LETTER = "count_letter"
    DEDUPE = "dedupe"
    EVERY_KTH = "every_kth"
    UPPER_JOIN = "upper_join"


# Items per difficulty are scaled by this factor so that every operation's longest trajectories stay
# under about 4k tokens of the 1024-entry tokenizer (measured: 13-27 tokens per item at difficulty 5;
# sorting writes each item three times, counting spells every letter).
_SCALE: Final = {
    StringOp.REVERSE_LETTERS: 0.9,
    StringOp.REVERSE_LIST: 0.48,
    StringOp.SORT_NUMBERS: 0.5,
    StringOp.SORT_WORDS: 0.85,
    StringOp.COUNT_LETTER: 0.55,
    StringOp.DEDUPE: 0.62,
    StringOp.EVERY_KTH: 0.95,
    StringOp.UPPER_JOIN: 0.5,
}


def generate(seed: int, difficulty: int) -> Task:
    rng = random.Random(seed)
    op = rng.choice(list(StringOp))
    low, high = _SIZES[difficulty]
    size = max(3, round(rng.randint(low, high) * _SCALE[op]))
    meta: dict[str, Any] = {"op": op.value}
    numbers_top = 99 if difficulty <= 2 else 999
    match op:
        case StringOp.REVERSE_LETTERS:
            text = ""
            while len(text) < size:
                text += rng.choice(WORDS)
            meta["items"] = [text[:size] if difficulty > 1 else text]
        case StringOp.SORT_NUMBERS:
            meta["items"] = [str(rng.randint(1, numbers_top)) for _ in range(size)]
        case StringOp.SORT_WORDS | StringOp.COUNT_LETTER | StringOp.UPPER_JOIN:
            meta["items"] = [rng.choice(WORDS) for _ in range(size)]
        case StringOp.DEDUPE:
            pool = _pool(rng, max(2, size * 2 // 3), numbers_top)
            meta["items"] = [rng.choice(pool) for _ in range(size)]
        case StringOp.REVERSE_LIST | StringOp.EVERY_KTH:
            meta["items"] = (
                _pool(rng, size, numbers_top) if rng.random() < 0.5 else rng.choices(WORDS, k=size)
            )
        case _:
            assert_never(op)
    if op is StringOp.EVERY_KTH:
        meta["k"] = rng.randint(2, min(5, size))
    if op is StringOp.COUNT_LETTER:
        meta["letter"] = rng.choice(_COUNTED_LETTERS)
    if op is StringOp.UPPER_JOIN:
        meta["sep"] = rng.choice(_SEPARATORS)
    answer, kind = _answer(op, meta)
    return Task(FAMILY, _question(op, meta), answer, difficulty, seed, meta, kind)


def _pool(rng: random.Random, size: int, numbers_top: int) -> list[str]:
    if rng.random() < 0.5:
        return rng.choices(WORDS, k=size)
    return [str(rng.randint(1, numbers_top)) for _ in range(size)]


def _answer(op: StringOp, meta: dict[str, Any]) -> tuple[str, AnswerKind]:
    items: list[str] = meta["items"]
    match op:
        case StringOp.REVERSE_LETTERS:
            return items[0][::-1], AnswerKind.TEXT
        case StringOp.REVERSE_LIST:
            return " ".join(reversed(items)), AnswerKind.LIST
        case StringOp.SORT_NUMBERS:
            return " ".join(sorted(items, key=int)), AnswerKind.LIST
        case StringOp.SORT_WORDS:
            return " ".join(sorted(items)), AnswerKind.LIST
        case StringOp.COUNT_LETTER:
            return str(sum(word.count(meta["letter"]) for word in items)), AnswerKind.INTEGER
        case StringOp.DEDUPE:
            return " ".join(dict.fromkeys(items)), AnswerKind.LIST
        case StringOp.EVERY_KTH:
            return " ".join(items[meta["k"] - 1 :: meta["k"]]), AnswerKind.LIST
        case StringOp.UPPER_JOIN:
            return meta["sep"].join(word.upper() for word in items), AnswerKind.TEXT
        case _:
            assert_never(op)


_LIST_FORMAT: Final = "Answer with the items separated by single spaces."


def _question(op: StringOp, meta: dict[str, Any]) -> str:
    items: list[str] = meta["items"]
    listed = ", ".join(items)
    match op:
        case StringOp.REVERSE_LETTERS:
            return f"Reverse the letters of '{items[0]}'. Answer with the reversed string."
        case StringOp.REVERSE_LIST:
            return f"Reverse the order of this list: {listed}. {_LIST_FORMAT}"
        case StringOp.SORT_NUMBERS:
            return f"Sort these numbers from smallest to largest: {listed}. {_LIST_FORMAT}"
        case StringOp.SORT_WORDS:
            return f"Sort these words in alphabetical order: {listed}. {_LIST_FORMAT}"
        case StringOp.COUNT_LETTER:
            return (
                f"How many times does the letter '{meta['letter']}' appear in this text: '{' '.join(items)}'?"
            )
        case StringOp.DEDUPE:
            return (
                "Remove the duplicates from this list, keeping the first occurrence of each item in order: "
                f"{listed}. {_LIST_FORMAT}"
            )
        case StringOp.EVERY_KTH:
            k = meta["k"]
            return f"Take every {_ordinal(k)} item of this list, starting with item {k}: {listed}. {_LIST_FORMAT}"
        case StringOp.UPPER_JOIN:
            return (
                f"Write each of these words in capital letters and join them with '{meta['sep']}': {listed}. "
                "Answer with the joined string."
            )
        case _:
            assert_never(op)


def _ordinal(k: int) -> str:
    return f"{k}{ {1: 'st', 2: 'nd', 3: 'rd'}.get(k, 'th') }"


def solve(task: Task) -> Trajectory:
    op = StringOp(task.meta["op"])
    answer, _ = _answer(op, dict(task.meta))
    if answer != task.answer:
        raise SolverError(f"strings solver got {answer!r}, the task says {task.answer!r}")
    builder = TrajectoryBuilder(task.question, tools=())
    builder.think(*_TRACES[op](dict(task.meta), answer))
    return builder.finish(answer)


def _rows(entries: Sequence[str]) -> list[str]:
    """Entries joined by ", ", ten to a line."""
    return [", ".join(entries[i : i + _PER_LINE]) for i in range(0, len(entries), _PER_LINE)]


def _numbered(items: Sequence[str]) -> list[str]:
    return [f"{index}: {item}" for index, item in enumerate(items, start=1)]


def _trace_reverse_letters(meta: dict[str, Any], answer: str) -> list[str]:
    letters = list(meta["items"][0])
    n = len(letters)
    backwards = [f"{index}: {letters[index - 1]}" for index in range(n, 0, -1)]
    return [
        f"The string has {n} letters. Position by position:",
        *_rows(_numbered(letters)),
        f"Reading them from position {n} back to 1:",
        *_rows(backwards),
        f"Joined: {answer}",
        f"Check: the result has {len(answer)} letters, as many as the input.",
    ]


def _trace_reverse_list(meta: dict[str, Any], answer: str) -> list[str]:
    items: list[str] = meta["items"]
    n = len(items)
    backwards = [f"{index}: {items[index - 1]}" for index in range(n, 0, -1)]
    return [
        f"The list has {n} items:",
        *_rows(_numbered(items)),
        "From the last item back to the first:",
        *_rows(backwards),
        f"Check: {n} items in, {len(answer.split())} items out.",
    ]


def _grouped(
    items: list[str],
    key: Callable[[str], str],
    order: Callable[[str], Any],
    sort: Callable[[list[str]], list[str]],
) -> tuple[list[str], list[str]]:
    """Lines of the groups in list order, then lines of the groups sorted; groups appear in key order."""
    groups: dict[str, list[str]] = {}
    for item in items:
        groups.setdefault(key(item), []).append(item)
    names = sorted(groups, key=order)
    return (
        [f"{name}: {', '.join(groups[name])}" for name in names],
        [f"{name}: {', '.join(sort(groups[name]))}" for name in names],
    )


def _trace_sort_numbers(meta: dict[str, Any], answer: str) -> list[str]:
    items: list[str] = meta["items"]
    unsorted, ordered = _grouped(
        items,
        key=lambda item: f"{int(item) // 10}x",
        order=lambda name: int(name[:-1]),
        sort=lambda group: sorted(group, key=int),
    )
    return [
        f"There are {len(items)} numbers. I group them by their value without the last digit "
        "(12x holds 120 to 129), keeping the list order:",
        *unsorted,
        "Now I sort each group by its last digit:",
        *ordered,
        f"The groups in order give: {answer}",
        f"Check: {len(items)} numbers in, {len(answer.split())} numbers out.",
    ]


def _trace_sort_words(meta: dict[str, Any], answer: str) -> list[str]:
    items: list[str] = meta["items"]
    unsorted, ordered = _grouped(items, key=lambda word: word[0], order=lambda name: name, sort=sorted)
    return [
        f"There are {len(items)} words. I group them by their first letter, keeping the list order:",
        *unsorted,
        "Now I sort inside each group, comparing letter by letter:",
        *ordered,
        f"The groups in order give: {answer}",
        f"Check: {len(items)} words in, {len(answer.split())} words out.",
    ]


def _trace_count_letter(meta: dict[str, Any], answer: str) -> list[str]:
    letter: str = meta["letter"]
    lines = [f"I spell each word with every '{letter}' in capitals and keep a running total:"]
    total = 0
    for word in meta["items"]:
        count = word.count(letter)
        total += count
        spelled = " ".join(char.upper() if char == letter else char for char in word)
        lines.append(f"{word}: {spelled} → {count}, total {total}")
    lines.append(f"The letter '{letter}' appears {answer} {'time' if total == 1 else 'times'}.")
    return lines


def _trace_dedupe(meta: dict[str, Any], answer: str) -> list[str]:
    items: list[str] = meta["items"]
    seen: set[str] = set()
    entries = []
    for index, item in enumerate(items, start=1):
        entries.append(f"{index}: {item} {'seen' if item in seen else 'new'}")
        seen.add(item)
    kept = len(answer.split())
    return [
        "I go through the list and keep an item only the first time I see it:",
        *_rows(entries),
        f"Kept: {answer}",
        f"Check: {kept} different items kept out of {len(items)}.",
    ]


def _trace_every_kth(meta: dict[str, Any], answer: str) -> list[str]:
    items: list[str] = meta["items"]
    k: int = meta["k"]
    lines = [f"I count the items and keep every {_ordinal(k)} one:"]
    for start in range(0, len(items), k):
        chunk = _numbered(items)[start : start + k]
        if len(chunk) == k:
            chunk[-1] += " keep"
        lines.append(", ".join(chunk))
    lines += [f"Kept: {answer}", f"Check: {len(items)} items give {len(items) // k} kept."]
    return lines


def _trace_upper_join(meta: dict[str, Any], answer: str) -> list[str]:
    items: list[str] = meta["items"]
    sep: str = meta["sep"]
    return [
        "Each word in capital letters:",
        *_rows([f"{index}: {word} → {word.upper()}" for index, word in enumerate(items, start=1)]),
        f"Joined with '{sep}': {answer}",
        f"Check: {len(items)} words and {len(items) - 1} separators.",
    ]


_TRACES: Final[dict[StringOp, Callable[[dict[str, Any], str], list[str]]]] = {
    StringOp.REVERSE_LETTERS: _trace_reverse_letters,
    StringOp.REVERSE_LIST: _trace_reverse_list,
    StringOp.SORT_NUMBERS: _trace_sort_numbers,
    StringOp.SORT_WORDS: _trace_sort_words,
    StringOp.COUNT_LETTER: _trace_count_letter,
    StringOp.DEDUPE: _trace_dedupe,
    StringOp.EVERY_KTH: _trace_every_kth,
    StringOp.UPPER_JOIN: _trace_upper_join,
}
