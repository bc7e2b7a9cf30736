"""Threads, appends, history and compaction on a real database (SQLite file and PostgreSQL)."""

from datetime import UTC

import anyio
import pytest

from pipo_agent.memory import (
    InvalidMessageError,
    MemoryStore,
    Message,
    NotFoundError,
    StoreMisuseError,
    StoreStateError,
)
from tests.memory.conftest import assistant, result, system, user

pytestmark = pytest.mark.anyio


async def test_threads_are_created_listed_and_deleted(store: MemoryStore) -> None:
    first = await store.create_thread(title="first", metadata={"user": "ada"})
    second = await store.create_thread(thread_id="mine")
    assert second.id == "mine" and second.title is None and second.metadata == {}
    assert first.created_at.tzinfo is not None
    assert await store.get_thread(first.id) == first
    await store.append_message(first.id, user("hi"))
    assert [t.id for t in await store.list_threads()] == [first.id, "mine"]
    assert [t.id for t in await store.list_threads(limit=1, offset=1)] == ["mine"]
    await store.delete_thread(first.id)
    with pytest.raises(NotFoundError):
        await store.get_thread(first.id)
    with pytest.raises(NotFoundError):
        await store.load_history(first.id)
    with pytest.raises(StoreStateError, match="already exists"):
        await store.create_thread(thread_id="mine")


async def test_append_returns_seqs_and_history_keeps_order_and_payload(store: MemoryStore) -> None:
    thread = await store.create_thread()
    call = assistant("", ("c1", "calc", {"expr": "2*3", "nested": [1, {"a": None}]}), reasoning="think")
    seqs = await store.append_messages(thread.id, [system("s"), user("ünïcode ✓")], token_counts=[3, 4])
    assert seqs == [1, 2]
    assert await store.append_message(thread.id, call) == 3
    assert await store.append_message(thread.id, result("c1", {"value": 6})) == 4
    assert await store.append_messages(thread.id, []) == []
    expected = [system("s"), user("ünïcode ✓"), call, result("c1", {"value": 6})]
    assert await store.load_history(thread.id) == expected
    stored = await store.load_messages(thread.id)
    assert [(m.seq, m.token_count) for m in stored] == [(1, 3), (2, 4), (3, None), (4, None)]
    assert stored[0].created_at.tzinfo == UTC
    assert (await store.get_thread(thread.id)).updated_at >= thread.updated_at


async def test_invalid_messages_are_rejected_before_anything_is_written(store: MemoryStore) -> None:
    thread = await store.create_thread()
    bad: list[object] = [
        {"content": "no kind"},
        {"kind": "robot"},
        {"kind": "tool_result", "content": "no call id"},
        {"kind": "assistant", "tool_calls": [{"id": "x", "name": "f", "arguments": "not a dict"}]},
        {"kind": "assistant", "tool_calls": [{"id": "x", "name": "f"}, {"id": "x", "name": "g"}]},
        {"kind": "user", "content": float("nan")},
        {"kind": "user", "content": object()},
        "not a dict",
    ]
    for message in bad:
        with pytest.raises(InvalidMessageError):
            await store.append_messages(thread.id, [user("fine"), message])  # type: ignore[list-item]
    with pytest.raises(StoreMisuseError, match="token counts"):
        await store.append_messages(thread.id, [user("a")], token_counts=[1, 2])
    with pytest.raises(NotFoundError):
        await store.append_message("no-such-thread", user("a"))
    assert await store.load_history(thread.id) == []


async def test_concurrent_appends_get_distinct_consecutive_seqs(store: MemoryStore) -> None:
    thread = await store.create_thread()
    seqs: list[int] = []

    async def writer(w: int) -> None:
        for i in range(5):
            seqs.extend(await store.append_messages(thread.id, [user(f"{w}.{i}.a"), user(f"{w}.{i}.b")]))

    async with anyio.create_task_group() as tg:
        for w in range(4):
            tg.start_soon(writer, w)
    assert sorted(seqs) == list(range(1, 41))
    history = await store.load_history(thread.id)
    # Each append's two messages stay adjacent.
    for first, second in zip(history[::2], history[1::2], strict=True):
        assert first["content"][:-1] == second["content"][:-1]


def history_with_tools() -> list[Message]:
    return [
        system("rules"),
        user("q1"),
        assistant("", ("a", "calc", {}), ("b", "calc", {})),
        result("a", 1),
        result("b", 2),
        assistant("a1"),
        user("q2"),
        assistant("", ("c", "calc", {})),
        result("c", 3),
        assistant("a2"),
    ]


async def summarize(messages: list[Message]) -> Message:
    return system(f"summary of {len(messages)}: " + ",".join(str(m.get("content")) for m in messages))


async def test_compaction_replaces_old_messages_with_one_summary(store: MemoryStore) -> None:
    thread = await store.create_thread()
    await store.append_messages(thread.id, history_with_tools())
    seen: list[list[Message]] = []

    async def recording(messages: list[Message]) -> Message:
        seen.append(messages)
        return await summarize(messages)

    outcome = await store.compact_history(thread.id, recording, keep_last_n=2)
    assert outcome is not None
    # keep_last_n=2 would split call c from its result: the cut moved back to keep both.
    assert (outcome.removed, outcome.kept, outcome.first_seq, outcome.last_seq) == (6, 3, 2, 7)
    assert outcome.summary_seq == 2
    assert seen == [history_with_tools()[1:7]]
    stored = await store.load_messages(thread.id)
    assert [m.seq for m in stored] == [1, 2, 8, 9, 10]
    assert [m.message for m in stored] == [
        system("rules"),
        await summarize(history_with_tools()[1:7]),
        *history_with_tools()[7:],
    ]
    assert await store.append_message(thread.id, user("next")) == 11
    # Compacting again summarizes the summary too; a plan with nothing to remove changes nothing.
    assert await store.compact_history(thread.id, summarize, keep_last_n=10) is None
    again = await store.compact_history(thread.id, summarize, keep_last_n=1)
    assert again is not None and again.removed == 4
    assert [m["kind"] for m in await store.load_history(thread.id)] == ["system", "system", "user"]


async def test_compaction_by_token_budget_uses_stored_counts_then_count_tokens(store: MemoryStore) -> None:
    thread = await store.create_thread()
    messages = history_with_tools()
    await store.append_messages(thread.id, messages[:5], token_counts=[10, 5, 20, 30, 30])
    await store.append_messages(thread.id, messages[5:])
    with pytest.raises(StoreMisuseError, match="count_tokens"):
        await store.compact_history(thread.id, summarize, token_budget=50)
    outcome = await store.compact_history(thread.id, summarize, token_budget=30, count_tokens=lambda m: 5)
    assert outcome is not None
    # Tail 9, 8, 7, 6 cost 20 plus the prompt's 10; the cut lands between two plain messages.
    assert (outcome.first_seq, outcome.last_seq, outcome.kept) == (2, 6, 4)
    kept = await store.load_messages(thread.id)
    assert kept[1].token_count == 5  # the summary's, from count_tokens


async def test_compaction_rejects_tool_summaries_and_concurrent_compaction(store: MemoryStore) -> None:
    thread = await store.create_thread()
    await store.append_messages(thread.id, history_with_tools())

    async def tool_summary(messages: list[Message]) -> Message:
        return assistant("", ("z", "calc", {}))

    with pytest.raises(InvalidMessageError, match="summary"):
        await store.compact_history(thread.id, tool_summary, keep_last_n=1)

    async def racing(messages: list[Message]) -> Message:
        # Another compaction lands while this summary is being written.
        await store.compact_history(thread.id, summarize, keep_last_n=1)
        return await summarize(messages)

    with pytest.raises(StoreStateError, match="concurrently"):
        await store.compact_history(thread.id, racing, keep_last_n=3)
    assert len(await store.load_history(thread.id)) == 3


async def test_typed_histories_round_trip_unchanged(store: MemoryStore) -> None:
    """The agent's own serializer (``pipo_agent.messages``) writes what the store keeps, byte for byte."""
    messages = pytest.importorskip("pipo_agent.messages", reason="pipo_agent.messages is not in this tree")
    typed = [
        messages.SystemMessage(content="rules"),
        messages.UserMessage(content="6*7?"),
        messages.AssistantMessage(
            reasoning="multiply",
            tool_calls=[messages.ToolCall(id="c1", name="calc", arguments={"expr": "6*7"})],
            invalid_tool_calls=[messages.InvalidToolCall(id="c2", raw="<x>", error="not JSON")],
            usage=messages.Usage(prompt_tokens=5, completion_tokens=9, drafts_proposed=4, drafts_committed=3),
        ),
        messages.ToolResultMessage(tool_call_id="c1", name="calc", content="42"),
        messages.ToolResultMessage(tool_call_id="c2", name=None, content="bad call", is_error=True),
        messages.AssistantMessage(content="42"),
    ]
    thread = await store.create_thread()
    await store.append_messages(thread.id, messages.dump_history(typed))
    assert messages.load_history(await store.load_history(thread.id)) == typed
