"""Where compaction may cut: never between an assistant tool call and any of its results."""

import itertools
import random
from typing import Any

import pytest

from pipo_agent.memory import StoreMisuseError, plan_compaction, safe_cuts
from tests.memory.conftest import assistant, result, system, user


def calls(*ids: str) -> dict[str, Any]:
    return assistant("", *[(i, "calc", {"x": 1}) for i in ids])


def split_pairs(messages: list[dict[str, Any]], cut: int) -> set[str]:
    """Call ids with a call or result on both sides of ``cut`` (the oracle, by brute force)."""

    def ids(part: list[dict[str, Any]]) -> set[str]:
        found = set()
        for m in part:
            found |= {c["id"] for c in m.get("tool_calls", [])}  # type: ignore[attr-defined]
            if m["kind"] == "tool_result":
                found.add(m["tool_call_id"])  # type: ignore[arg-type]
        return found

    return ids(messages[:cut]) & ids(messages[cut:])


def test_plain_conversation_is_safe_everywhere() -> None:
    messages = [system("s"), user("a"), assistant("b"), user("c"), assistant("d")]
    assert safe_cuts(messages) == [True] * 6


def test_single_call_and_result_stay_together() -> None:
    messages = [user("q"), calls("a"), result("a", 1), assistant("done")]
    #         cut:  0       1            2 (splits a)     3        4
    assert safe_cuts(messages) == [True, True, False, True, True]


def test_parallel_calls_keep_the_whole_group() -> None:
    messages = [
        user("q"),
        calls("a", "b", "c"),
        result("a", 1),
        result("b", 2),
        result("c", 3),
        assistant("ok"),
    ]
    assert safe_cuts(messages) == [True, True, False, False, False, True, True]


def test_results_out_of_order_and_interleaved_turns() -> None:
    messages = [
        calls("a", "b"),
        result("b", 2),
        user("meanwhile"),
        result("a", 1),
        calls("c"),
        result("c", 3),
    ]
    assert safe_cuts(messages) == [True, False, False, False, True, False, True]


def test_invalid_calls_and_the_tool_kind_alias_pair_up_too() -> None:
    invalid = {
        "kind": "assistant",
        "content": "",
        "invalid_tool_calls": [{"id": "bad", "raw": "<x>", "error": "e"}],
    }
    answer = {"kind": "tool", "tool_call_id": "bad", "name": None, "content": "unparsable", "is_error": True}
    messages = [user("q"), invalid, user("between"), answer, assistant("ok")]
    assert safe_cuts(messages) == [True, True, False, False, True, True]


def test_unanswered_call_and_orphan_result_do_not_block() -> None:
    messages = [calls("lost"), user("q"), result("stray", 0), assistant("x")]
    assert all(safe_cuts(messages))


def test_safe_cuts_match_brute_force_on_random_histories() -> None:
    rng = random.Random(0)
    counter = itertools.count()
    for _ in range(200):
        messages: list[dict[str, Any]] = []
        open_ids: list[str] = []
        for _ in range(rng.randint(0, 14)):
            roll = rng.random()
            if roll < 0.3:
                ids = [f"c{next(counter)}" for _ in range(rng.randint(1, 3))]
                messages.append(calls(*ids))
                open_ids += ids
            elif roll < 0.7 and open_ids:
                messages.append(result(open_ids.pop(rng.randrange(len(open_ids))), 0))
            else:
                messages.append(user("u") if rng.random() < 0.5 else assistant("a"))
        expected = [not split_pairs(messages, cut) for cut in range(len(messages) + 1)]
        assert safe_cuts(messages) == expected, messages


HISTORY = [
    system("rules"),  # 0
    user("q1"),  # 1
    calls("a", "b"),  # 2
    result("a", 1),  # 3
    result("b", 2),  # 4
    assistant("a1"),  # 5
    user("q2"),  # 6
    calls("c"),  # 7
    result("c", 3),  # 8
    assistant("a2"),  # 9
]


@pytest.mark.parametrize(
    ("keep_last_n", "cut"),
    [
        (1, 9),
        (2, 7),  # 8 would split c: the cut moves earlier, keeping call and result
        (3, 7),
        (4, 6),
        (5, 5),
        (6, 2),  # 4 and 3 would split the parallel a/b group
        (7, 2),
        (8, 2),
    ],
)
def test_keep_last_n_moves_the_cut_earlier(keep_last_n: int, cut: int) -> None:
    plan = plan_compaction(HISTORY, keep_last_n=keep_last_n)
    assert plan is not None
    assert (plan.start, plan.cut) == (1, cut)
    assert not split_pairs(HISTORY, plan.cut)


@pytest.mark.parametrize("keep_last_n", [9, 10, 50])
def test_nothing_to_compact_returns_none(keep_last_n: int) -> None:
    assert plan_compaction(HISTORY, keep_last_n=keep_last_n) is None


def test_keep_zero_summarizes_everything_but_the_system_prompt() -> None:
    plan = plan_compaction(HISTORY, keep_last_n=0)
    assert plan is not None and (plan.start, plan.cut) == (1, 10)


def test_system_prompt_is_summarized_when_asked() -> None:
    plan = plan_compaction(HISTORY, keep_last_n=8, keep_system=False)
    assert plan is not None and (plan.start, plan.cut) == (0, 2)
    no_system = HISTORY[1:]
    plan = plan_compaction(no_system, keep_last_n=2)
    assert plan is not None and (plan.start, plan.cut) == (0, 6)


def test_history_of_only_tool_group_cannot_be_cut() -> None:
    messages = [calls("a", "b"), result("a", 1), result("b", 2)]
    assert plan_compaction(messages, keep_last_n=1) is None
    plan = plan_compaction(messages, keep_last_n=0)
    assert plan is not None and (plan.start, plan.cut) == (0, 3)


COUNTS = [10, 5, 20, 30, 30, 5, 5, 20, 30, 5]


@pytest.mark.parametrize(
    ("budget", "cut"),
    [
        (10_000, None),  # everything fits
        (10 + 5 + 30 + 20 + 5 + 5, 5),  # the tail from 5 fits exactly
        (10 + 5, 9),
        (10 + 30 + 5, 9),  # 8 fits the budget but splits c: the cut moves later
        (10 + 20 + 30 + 5, 7),
        (10 + 5 + 5 + 20 + 30 + 5 + 30, 5),  # 4 fits but splits a/b: moved past the whole group
        (5, 10),  # not even the system prompt fits: everything else is summarized
    ],
)
def test_token_budget_moves_the_cut_later(budget: int, cut: int | None) -> None:
    plan = plan_compaction(HISTORY, token_budget=budget, token_counts=COUNTS)
    if cut is None:
        assert plan is None
        return
    assert plan is not None and (plan.start, plan.cut) == (1, cut)
    assert not split_pairs(HISTORY, plan.cut)
    if cut < len(HISTORY):
        assert COUNTS[0] + sum(COUNTS[cut:]) <= budget


def test_arguments_are_checked() -> None:
    with pytest.raises(StoreMisuseError, match="exactly one"):
        plan_compaction(HISTORY)
    with pytest.raises(StoreMisuseError, match="exactly one"):
        plan_compaction(HISTORY, keep_last_n=1, token_budget=1, token_counts=COUNTS)
    with pytest.raises(StoreMisuseError, match="one token count per message"):
        plan_compaction(HISTORY, token_budget=10, token_counts=[1])
    with pytest.raises(StoreMisuseError, match=">= 0"):
        plan_compaction(HISTORY, keep_last_n=-1)
