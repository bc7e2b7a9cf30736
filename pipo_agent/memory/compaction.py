"""Where history compaction may cut: pure functions over a list of message dicts.

A cut at position ``i`` keeps ``messages[i:]`` and replaces ``messages[start:i]`` by one summary
(``start`` is 1 when the first message is a system prompt, which is always kept). A cut is *safe* when
no assistant tool call (an invalid one included) is separated from any of its results: the model would otherwise see a result with
no call, or a call with no result, which providers reject (LangChain #29637, langmem #112).

- ``keep_last_n``: keep at least the last n messages; an unsafe cut moves *earlier*, keeping the whole
  tool-call group.
- ``token_budget``: keep the longest tail such that kept messages (the system prompt included) fit the
  budget; an unsafe cut moves *later*, summarizing the whole group, so the budget still holds.
"""

from collections.abc import Sequence
from dataclasses import dataclass

from pipo_agent.memory.errors import StoreMisuseError
from pipo_agent.memory.payload import answerable_ids, kind_of
from pipo_agent.memory.records import Message


@dataclass(frozen=True, slots=True)
class CompactionPlan:
    """Summarize ``messages[start:cut]``; keep ``messages[:start]`` and ``messages[cut:]``."""

    start: int
    cut: int


def safe_cuts(messages: Sequence[Message]) -> list[bool]:
    """``safe[i]`` for every cut ``i`` in ``0..len(messages)``."""
    positions: dict[str, list[int]] = {}
    for i, message in enumerate(messages):
        for call_id in answerable_ids(message):
            positions.setdefault(call_id, []).append(i)
        if kind_of(message) == "tool_result":
            positions.setdefault(str(message["tool_call_id"]), []).append(i)
    # A pair spanning positions lo..hi is split by every cut in lo+1..hi: mark them with a difference array.
    depth = [0] * (len(messages) + 2)
    for spots in positions.values():
        lo, hi = min(spots), max(spots)
        if hi > lo:
            depth[lo + 1] += 1
            depth[hi + 1] -= 1
    safe, open_pairs = [], 0
    for i in range(len(messages) + 1):
        open_pairs += depth[i]
        safe.append(open_pairs == 0)
    return safe


def plan_compaction(
    messages: Sequence[Message],
    *,
    keep_last_n: int | None = None,
    token_budget: int | None = None,
    token_counts: Sequence[int] | None = None,
    keep_system: bool = True,
) -> CompactionPlan | None:
    """The safe cut for one of ``keep_last_n`` or ``token_budget``; ``None`` when nothing would be summarized."""
    if (keep_last_n is None) == (token_budget is None):
        raise StoreMisuseError("give exactly one of keep_last_n and token_budget")
    start = 1 if keep_system and messages and messages[0].get("kind") == "system" else 0
    safe = safe_cuts(messages)
    if keep_last_n is not None:
        if keep_last_n < 0:
            raise StoreMisuseError(f"keep_last_n must be >= 0, got {keep_last_n}")
        cut = max(start, len(messages) - keep_last_n)
        while not safe[cut]:
            cut -= 1
    else:
        assert token_budget is not None
        cut = _budget_cut(messages, start, token_budget, token_counts)
        while not safe[cut]:
            cut += 1
    return CompactionPlan(start, cut) if cut > start else None


def _budget_cut(messages: Sequence[Message], start: int, budget: int, counts: Sequence[int] | None) -> int:
    if budget < 0:
        raise StoreMisuseError(f"token_budget must be >= 0, got {budget}")
    if counts is None or len(counts) != len(messages):
        raise StoreMisuseError("token_budget needs one token count per message")
    used = sum(counts[:start])
    cut = len(messages)
    while cut > start and used + counts[cut - 1] <= budget:
        cut -= 1
        used += counts[cut]
    return cut
