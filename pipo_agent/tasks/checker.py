"""Answer extraction and comparison: is a model's final text a correct answer to a task?

The answer is the last line that starts with ``Answer:`` (any case) after the last ``</think>``. The
comparison is exact after a lenient clean-up: surrounding whitespace, quotes and one trailing period are
dropped; integers may use thousands separators (``1,995``); text compares with runs of whitespace as one
space; lists may separate items with commas and sit in brackets (see :class:`AnswerKind`).
"""

import re
from typing import Final, assert_never

from pipo_agent.tasks.chat_format import THINK_END
from pipo_agent.tasks.types import AnswerKind, Task

_ANSWER_LINE: Final = re.compile(r"^\s*answer\s*:(.*)$", re.IGNORECASE | re.MULTILINE)
_INTEGER: Final = re.compile(r"^[+-]?(?:\d+|\d{1,3}(?:,\d{3})+)$")


def extract_answer(final_text: str) -> str | None:
    """The raw text after the last ``Answer:`` line's colon, or None when there is no such line."""
    tail = final_text.rsplit(THINK_END, 1)[-1]
    matches = _ANSWER_LINE.findall(tail)
    return matches[-1].strip() if matches else None


def normalize_answer(text: str, kind: AnswerKind) -> str | None:
    """The canonical form of an answer, or None when it is not a valid answer of that kind."""
    cleaned = text.strip()
    if cleaned.endswith("."):
        cleaned = cleaned[:-1].rstrip()
    if len(cleaned) >= 2 and cleaned[0] == cleaned[-1] and cleaned[0] in "'\"`":
        cleaned = cleaned[1:-1].strip()
    match kind:
        case AnswerKind.INTEGER:
            if not _INTEGER.match(cleaned):
                return None
            return str(int(cleaned.replace(",", "")))
        case AnswerKind.TEXT:
            return " ".join(cleaned.split()) or None
        case AnswerKind.LIST:
            if cleaned[:1] == "[" and cleaned[-1:] == "]":
                cleaned = cleaned[1:-1]
            items = [item.strip("'\"") for item in re.split(r"[,\s]+", cleaned) if item]
            return " ".join(items) or None
        case _:
            assert_never(kind)


def check(task: Task, final_text: str) -> bool:
    """Whether ``final_text`` ends with a correct ``Answer:`` line for ``task``."""
    raw = extract_answer(final_text)
    if raw is None:
        return False
    given = normalize_answer(raw, task.answer_kind)
    return given is not None and given == normalize_answer(task.answer, task.answer_kind)
