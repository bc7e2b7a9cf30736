"""Export history in LangChain's chat-history format without importing LangChain.

The output equals what ``langchain_core.messages.messages_to_dict`` produces for the corresponding
``SystemMessage`` / ``HumanMessage`` / ``AIMessage`` / ``ToolMessage``, so it feeds
``messages_from_dict`` and ``SQLChatMessageHistory`` rows (``json.dumps`` of each dict) directly.
Reasoning goes to ``additional_kwargs["reasoning_content"]``, the key LangChain integrations use for it.
"""

import json
from collections.abc import Iterable
from typing import Any, assert_never

from pipo_agent.memory.payload import check_message, is_error_result, tool_calls
from pipo_agent.memory.records import Message

_LC_TYPES = {"system": "system", "user": "human", "assistant": "ai", "tool_result": "tool"}


def to_langchain_dict(message: Message) -> dict[str, Any]:
    kind = check_message(message)
    lc_type = _LC_TYPES[kind]
    data: dict[str, Any] = {
        "content": _text(message.get("content")),
        "additional_kwargs": {},
        "response_metadata": {},
        "type": lc_type,
        "name": message.get("name"),
        "id": None,
    }
    match kind:
        case "system" | "user":
            pass
        case "assistant":
            if message.get("reasoning"):
                data["additional_kwargs"]["reasoning_content"] = message["reasoning"]
            data["tool_calls"] = [
                {"name": c["name"], "args": c.get("arguments", {}), "id": c["id"], "type": "tool_call"}
                for c in tool_calls(message)
            ]
            data["invalid_tool_calls"] = [
                {
                    "name": c.get("name"),
                    "args": c.get("raw"),
                    "id": c["id"],
                    "error": c.get("error"),
                    "type": "invalid_tool_call",
                }
                for c in message.get("invalid_tool_calls") or []
            ]
            data["usage_metadata"] = None
        case "tool_result":
            data["tool_call_id"] = message["tool_call_id"]
            data["artifact"] = None
            data["status"] = "error" if is_error_result(message) else "success"
        case _:
            assert_never(kind)
    return {"type": lc_type, "data": data}


def to_langchain_dicts(messages: Iterable[Message]) -> list[dict[str, Any]]:
    return [to_langchain_dict(m) for m in messages]


def _text(content: object) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    # Structured tool output: LangChain messages carry text, so it travels as JSON text.
    return json.dumps(content, ensure_ascii=False)
