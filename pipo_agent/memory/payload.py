"""What the store checks in a message dict, so malformed history never reaches the database.

The store does not know the agent's typed messages; it relies on these keys only:

- ``kind``: ``system`` | ``user`` | ``assistant`` | ``tool_result`` (``tool`` is accepted as the same kind:
  it is what :mod:`pipo_agent.messages` writes; the dict itself is stored and returned unchanged)
- assistant: optional ``tool_calls``, a list of ``{"id": str, "name": str, "arguments": dict}``, and
  optional ``invalid_tool_calls``, a list of ``{"id": str, ...}`` (calls that could not be parsed, which
  a tool result may answer but which never run); all ids distinct
- tool result: ``tool_call_id`` (str); ``is_error`` (bool, optional)

Everything else is carried through untouched. A message must be JSON-serializable without NaN or
infinities, which PostgreSQL's JSONB rejects.
"""

import json
from collections.abc import Sequence
from typing import Any, Final, Literal, get_args

from pipo_agent.memory.errors import InvalidMessageError
from pipo_agent.memory.records import Message

MessageKind = Literal["system", "user", "assistant", "tool_result"]
MESSAGE_KINDS: Final[tuple[MessageKind, ...]] = get_args(MessageKind)
_ALIASES: Final[dict[str, MessageKind]] = {"tool": "tool_result"}


def kind_of(message: Message) -> MessageKind | None:
    """The message's kind with aliases resolved; ``None`` when it has no valid kind."""
    kind = message.get("kind")
    if not isinstance(kind, str):
        return None
    kind = _ALIASES.get(kind, kind)
    return next((k for k in MESSAGE_KINDS if k == kind), None)


def check_message(message: object, where: str = "message") -> MessageKind:
    """Validate one message dict and return its kind (aliases resolved)."""
    if not isinstance(message, dict):
        raise InvalidMessageError(f"{where} must be a dict, got {type(message).__name__}")
    kind = kind_of(message)
    if kind is None:
        expected = ", ".join([*MESSAGE_KINDS, *_ALIASES])
        raise InvalidMessageError(f"{where} has kind {message.get('kind')!r}; expected one of {expected}")
    if kind == "assistant":
        answerable_ids(message, where)
    elif kind == "tool_result":
        call_id = message.get("tool_call_id")
        if not isinstance(call_id, str) or not call_id:
            raise InvalidMessageError(f"{where}: a tool result needs a non-empty string tool_call_id")
    try:
        json.dumps(message, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidMessageError(f"{where} is not JSON-serializable: {exc}") from exc
    return kind


def check_messages(messages: Sequence[object]) -> list[MessageKind]:
    return [check_message(m, f"message {i}") for i, m in enumerate(messages)]


def tool_calls(message: Message, where: str = "message") -> list[dict[str, Any]]:
    """The runnable tool calls of an assistant message (empty for other kinds), validated."""
    if kind_of(message) != "assistant":
        return []
    calls = _call_list(message, "tool_calls", where)
    for call in calls:
        name, arguments = call.get("name"), call.get("arguments", {})
        if not isinstance(name, str) or not name:
            raise InvalidMessageError(f"{where}: tool call {call['id']!r} needs a non-empty string name")
        if not isinstance(arguments, dict):
            raise InvalidMessageError(f"{where}: tool call {call['id']!r} arguments must be a dict")
    return calls


def answerable_ids(message: Message, where: str = "message") -> list[str]:
    """Ids a tool result may answer: the runnable calls, then the invalid ones."""
    if kind_of(message) != "assistant":
        return []
    ids = [c["id"] for c in tool_calls(message, where)]
    ids += [c["id"] for c in _call_list(message, "invalid_tool_calls", where)]
    if len(set(ids)) != len(ids):
        raise InvalidMessageError(f"{where}: a tool call id appears twice")
    return ids


def _call_list(message: Message, key: str, where: str) -> list[dict[str, Any]]:
    calls = message.get(key) or []
    if not isinstance(calls, list):
        raise InvalidMessageError(f"{where}: {key} must be a list")
    for i, call in enumerate(calls):
        if not isinstance(call, dict):
            raise InvalidMessageError(f"{where}: {key}[{i}] must be a dict")
        if not isinstance(call.get("id"), str) or not call["id"]:
            raise InvalidMessageError(f"{where}: {key}[{i}] needs a non-empty string id")
    return calls


def check_tool_result(message: object, where: str = "tool result") -> Message:
    if check_message(message, where) != "tool_result":
        raise InvalidMessageError(f"{where} must be a tool result (kind 'tool_result' or 'tool')")
    assert isinstance(message, dict)
    return message


def is_error_result(message: Message) -> bool:
    return bool(message.get("is_error", False))
