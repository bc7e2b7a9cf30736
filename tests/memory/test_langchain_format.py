"""Export to LangChain's chat-history dicts, checked against LangChain itself when it is installed."""

import importlib.util
import json
from typing import Any

import pytest

from pipo_agent.memory import InvalidMessageError, MemoryStore, to_langchain_dicts
from tests.memory.conftest import assistant, result, system, user

HAS_LANGCHAIN = importlib.util.find_spec("langchain_core") is not None
NO_LANGCHAIN = "langchain_core is not installed (pip install 'pipo-agent[langchain]')"

HISTORY: list[dict[str, Any]] = [
    system("You are terse."),
    user("What is 6*7?"),
    assistant("", ("call-1", "calc", {"expr": "6*7"}), reasoning="multiply"),
    result("call-1", "42"),
    result("call-2", {"structured": [1, 2]}, is_error=True),
    assistant("42", reasoning=""),
    {
        "kind": "assistant",
        "content": "",
        "invalid_tool_calls": [{"id": "x", "raw": "<{", "error": "bad", "name": None}],
    },
    {"kind": "tool", "tool_call_id": "x", "name": None, "content": "bad call", "is_error": True},
]
LC_CALL = {"name": "calc", "args": {"expr": "6*7"}, "id": "call-1", "type": "tool_call"}


def test_export_has_langchains_shape() -> None:
    exported = to_langchain_dicts(HISTORY)
    assert [d["type"] for d in exported] == ["system", "human", "ai", "tool", "tool", "ai", "ai", "tool"]
    ai = exported[2]["data"]
    assert ai["tool_calls"] == [LC_CALL]
    assert ai["additional_kwargs"] == {"reasoning_content": "multiply"} and ai["content"] == ""
    assert exported[3]["data"]["tool_call_id"] == "call-1" and exported[3]["data"]["status"] == "success"
    assert exported[4]["data"]["status"] == "error"
    assert json.loads(exported[4]["data"]["content"]) == {"structured": [1, 2]}
    assert exported[5]["data"]["additional_kwargs"] == {}
    assert exported[6]["data"]["invalid_tool_calls"] == [
        {"name": None, "args": "<{", "id": "x", "error": "bad", "type": "invalid_tool_call"}
    ]
    assert exported[7]["data"]["status"] == "error" and exported[7]["data"]["name"] is None
    json.dumps(exported)  # SQLChatMessageHistory stores json.dumps of each dict
    with pytest.raises(InvalidMessageError):
        to_langchain_dicts([{"kind": "robot"}])


@pytest.mark.skipif(not HAS_LANGCHAIN, reason=NO_LANGCHAIN)
def test_round_trip_through_langchain_core() -> None:
    from langchain_core.messages import (
        AIMessage,
        HumanMessage,
        SystemMessage,
        ToolMessage,
        messages_from_dict,
        messages_to_dict,
    )

    exported = to_langchain_dicts(HISTORY)
    messages = messages_from_dict(exported)
    kinds = [
        SystemMessage,
        HumanMessage,
        AIMessage,
        ToolMessage,
        ToolMessage,
        AIMessage,
        AIMessage,
        ToolMessage,
    ]
    assert [type(m) for m in messages] == kinds
    ai, tool, error, invalid = messages[2], messages[3], messages[4], messages[6]
    assert isinstance(ai, AIMessage) and isinstance(invalid, AIMessage)
    assert isinstance(tool, ToolMessage) and isinstance(error, ToolMessage)
    assert ai.tool_calls == [LC_CALL]
    assert tool.tool_call_id == "call-1" and error.status == "error"
    assert invalid.invalid_tool_calls[0]["error"] == "bad"
    # Exactly what LangChain writes for the same messages.
    assert messages_to_dict(messages) == exported


@pytest.mark.anyio
async def test_store_exports_a_thread(store: MemoryStore) -> None:
    thread = await store.create_thread()
    await store.append_messages(thread.id, HISTORY)
    assert await store.export_langchain(thread.id) == to_langchain_dicts(HISTORY)
