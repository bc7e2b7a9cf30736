"""Messages both ways: LangChain's ``BaseMessage`` types <-> pipo-agent's typed messages.

LangChain -> pipo-agent (:func:`from_langchain`):

- ``SystemMessage`` / ``HumanMessage`` -> ``SystemMessage`` / ``UserMessage`` (a ``name`` is dropped: the
  chat format has no speaker names);
- ``AIMessage`` -> ``AssistantMessage``: text blocks are the content; reasoning comes from
  ``additional_kwargs["reasoning_content"]`` or ``reasoning`` / ``thinking`` blocks, so a reasoning
  model's own turns go back to it intact; ``tool_calls`` and ``invalid_tool_calls`` keep their ids;
- ``ToolMessage`` -> ``ToolResultMessage`` (``status="error"`` -> ``is_error``; a missing ``name`` is taken
  from the call it answers);
- ``ChatMessage`` with a role among system/user/human/assistant/ai/tool maps like the above.

Only text is accepted: an image, audio or file block raises ``ValueError`` (the default model reads text).

pipo-agent -> LangChain (:func:`to_langchain`, :func:`to_ai_message`): the reverse, with reasoning in
``additional_kwargs["reasoning_content"]`` (which ``content_blocks`` shows as a ``reasoning`` block) and
never in the text.
"""

from collections.abc import Iterable, Sequence
from typing import Any, assert_never

from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    ChatMessage,
    HumanMessage,
    ToolMessage,
)
from langchain_core.messages import SystemMessage as LCSystemMessage
from langchain_core.messages.tool import invalid_tool_call as lc_invalid_tool_call
from langchain_core.messages.tool import tool_call as lc_tool_call

from pipo_agent.messages import (
    AssistantMessage,
    InvalidToolCall,
    Message,
    SystemMessage,
    ToolCall,
    ToolResultMessage,
    UserMessage,
    new_tool_call_id,
)

__all__ = ["from_langchain", "to_ai_message", "to_langchain"]

_TEXT_BLOCKS = frozenset({"text", "text-plain"})
_REASONING_BLOCKS = {"reasoning": "reasoning", "thinking": "thinking"}  # block type -> its text key
_SKIPPED_BLOCKS = frozenset(  # carried by other fields (tool_calls) or meaningless to this model
    {"tool_use", "tool_call", "tool_call_chunk", "invalid_tool_call", "redacted_thinking", "non_standard"}
)
_ROLES = {"system": "system", "user": "user", "human": "user", "assistant": "assistant", "ai": "assistant"}


def from_langchain(messages: Sequence[BaseMessage]) -> list[Message]:
    """pipo-agent messages for a LangChain conversation; raises ``ValueError`` for what it cannot carry."""
    names: dict[str, str] = {}  # tool-call id -> tool name, to name the results that do not say
    converted: list[Message] = []
    for message in messages:
        item = _from_one(message, names)
        if isinstance(item, AssistantMessage):
            names.update({call.id: call.name for call in item.tool_calls})
        converted.append(item)
    return converted


def _from_one(message: BaseMessage, names: dict[str, str]) -> Message:
    if isinstance(message, AIMessage):
        return _assistant(message)
    if isinstance(message, ToolMessage):
        name = message.name or names.get(message.tool_call_id)
        content = _text(message.content, "ToolMessage")
        return ToolResultMessage(
            tool_call_id=message.tool_call_id, name=name, content=content, is_error=message.status == "error"
        )
    if isinstance(message, LCSystemMessage):
        return SystemMessage(content=_text(message.content, "SystemMessage"))
    if isinstance(message, HumanMessage):
        return UserMessage(content=_text(message.content, "HumanMessage"))
    if isinstance(message, ChatMessage):
        role = _ROLES.get(message.role)
        if role == "system":
            return SystemMessage(content=_text(message.content, "ChatMessage"))
        if role == "user":
            return UserMessage(content=_text(message.content, "ChatMessage"))
        if role == "assistant":
            return AssistantMessage(content=_text(message.content, "ChatMessage"))
        raise ValueError(f"ChatMessage role {message.role!r} is not supported; valid: {', '.join(_ROLES)}")
    raise ValueError(
        f"{type(message).__name__} is not supported; use SystemMessage, HumanMessage, AIMessage or ToolMessage"
    )


def _assistant(message: AIMessage) -> AssistantMessage:
    text: list[str] = []
    reasoning: list[str] = []
    content = message.content
    for block in [content] if isinstance(content, str) else content:
        if isinstance(block, str):
            text.append(block)
            continue
        kind = block.get("type")
        if kind in _TEXT_BLOCKS:
            text.append(str(block.get("text", "")))
        elif kind in _REASONING_BLOCKS:
            reasoning.append(str(block.get(_REASONING_BLOCKS[kind], "")))
        elif kind not in _SKIPPED_BLOCKS:
            raise ValueError(f"AIMessage content block of type {kind!r} is not supported (text only)")
    given = message.additional_kwargs.get("reasoning_content")
    if isinstance(given, str) and not reasoning:
        reasoning.append(given)
    return AssistantMessage(
        content="".join(text),
        reasoning="".join(reasoning) if reasoning else None,
        tool_calls=[
            ToolCall(id=call.get("id") or new_tool_call_id(), name=call["name"], arguments=call["args"])
            for call in message.tool_calls
        ],
        invalid_tool_calls=[
            InvalidToolCall(
                id=call.get("id") or new_tool_call_id(),
                raw=call.get("args") or "",
                error=call.get("error") or "invalid tool call",
                name=call.get("name"),
            )
            for call in message.invalid_tool_calls
        ],
    )


def _text(content: str | list[str | dict[str, Any]], where: str) -> str:
    if isinstance(content, str):
        return content
    parts: list[str] = []
    for block in content:
        if isinstance(block, str):
            parts.append(block)
        elif block.get("type") in _TEXT_BLOCKS:
            parts.append(str(block.get("text", "")))
        else:
            raise ValueError(
                f"{where} content block of type {block.get('type')!r} is not supported: ChatPIPO reads text only"
            )
    return "".join(parts)


def to_langchain(messages: Iterable[Message]) -> list[BaseMessage]:
    """LangChain messages for a pipo-agent history (usage and finish reasons go to ``response_metadata``)."""
    out: list[BaseMessage] = []
    for message in messages:
        if isinstance(message, SystemMessage):
            out.append(LCSystemMessage(content=message.content))
        elif isinstance(message, UserMessage):
            out.append(HumanMessage(content=message.content))
        elif isinstance(message, AssistantMessage):
            out.append(to_ai_message(message))
        elif isinstance(message, ToolResultMessage):
            status = "error" if message.is_error else "success"
            out.append(
                ToolMessage(
                    content=message.content,
                    tool_call_id=message.tool_call_id,
                    name=message.name,
                    status=status,
                )
            )
        else:
            assert_never(message)
    return out


def to_ai_message(message: AssistantMessage, **fields: Any) -> AIMessage:
    """The ``AIMessage`` of one assistant turn; ``fields`` (``usage_metadata``, ``response_metadata``, ``id``)
    are passed on, and when ``response_metadata`` is not given the turn's finish reason fills it."""
    additional: dict[str, Any] = {}
    if message.reasoning:
        additional["reasoning_content"] = message.reasoning
    if "response_metadata" not in fields and message.finish_reason is not None:
        fields["response_metadata"] = {"finish_reason": message.finish_reason.value}
    return AIMessage(
        content=message.content,
        additional_kwargs=additional,
        tool_calls=[lc_tool_call(name=c.name, args=c.arguments, id=c.id) for c in message.tool_calls],
        invalid_tool_calls=[
            lc_invalid_tool_call(name=c.name, args=c.raw, id=c.id, error=c.error)
            for c in message.invalid_tool_calls
        ],
        **fields,
    )
