"""A small parser of Google-style docstrings: the description and the ``Args:`` entries.

Whitespace is collapsed to single spaces, because the chat template lists each tool on one line.
"""

import inspect
import re
from dataclasses import dataclass, field
from typing import Final

_ARG_SECTIONS: Final = frozenset(
    {"args", "arguments", "parameters", "params", "keyword args", "keyword arguments"}
)
_SECTIONS: Final = _ARG_SECTIONS | {
    "returns",
    "return",
    "yields",
    "raises",
    "example",
    "examples",
    "note",
    "notes",
    "warning",
    "warnings",
    "see also",
    "attributes",
    "todo",
}
_SECTION_HEADER: Final = re.compile(r"^([A-Za-z][A-Za-z ]*?)\s*:\s*$")
_ARG_ENTRY: Final = re.compile(
    r"^\**(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$"
)  # "name (type): text" or "name: text"


@dataclass(frozen=True)
class Docstring:
    description: str
    args: dict[str, str] = field(default_factory=dict)


def parse_docstring(doc: str | None) -> Docstring:
    """The text before the first section, and one description per ``Args:`` entry."""
    description: list[str] = []
    args: dict[str, list[str]] = {}
    section: str | None = None
    current: str | None = None
    entry_indent: int | None = None
    for line in inspect.cleandoc(doc or "").splitlines():
        stripped = line.strip()
        header = _SECTION_HEADER.match(line)
        if header and header.group(1).lower() in _SECTIONS:
            section, current, entry_indent = header.group(1).lower(), None, None
            continue
        if section is None:
            description.append(stripped)
            continue
        if section not in _ARG_SECTIONS or not stripped:
            continue
        indent = len(line) - len(line.lstrip())
        entry = _ARG_ENTRY.match(stripped)
        if entry and (entry_indent is None or indent <= entry_indent):
            entry_indent = indent
            current = entry.group(1)
            args[current] = [entry.group(2)]
        elif current is not None:
            args[current].append(stripped)
    return Docstring(
        description=_collapse(description),
        args={name: _collapse(parts) for name, parts in args.items()},
    )


def _collapse(parts: list[str]) -> str:
    return " ".join(" ".join(parts).split())
