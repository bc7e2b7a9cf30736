"""Between OpenAI's wire format and the agent's typed messages and events.

In: wire messages become typed :mod:`~pipo_agent.messages` (a tool result's ``name`` is looked up from the
call it answers), so the prompt is rendered by the same :func:`~pipo_agent.chat_format.render_prompt` as the
embedded backend's. Out: parsed calls become ``tool_calls`` with JSON ``arguments``. OpenAI has no place for
a malformed call, so an :class:`~pipo_agent.messages.InvalidToolCall` goes out as a call whose ``arguments``
are what the model wrote (the block's text when it is not JSON, else its non-object ``arguments``); a client
that parses the arguments sees the mistake, and sending the call back renders the model's own block again.
"""

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pipo_agent.messages import (
    AssistantMessage,
    InvalidToolCall,
    Message,
    SystemMessage,
    ToolCall,
    ToolResultMessage,
    UserMessage,
)
from pipo_agent.server.errors import InvalidRequestError
from pipo_agent.server.protocol import (
    AssistantWire,
    ChatCompletionRequest,
    NamedToolChoice,
    SystemWire,
    ToolWire,
    UserWire,
    WireMessage,
    WireToolCall,
    text_of,
)

__all__ = ["TurnUsage", "finish_reason_of", "prompt_tools", "to_messages", "tool_call_wire", "usage_body"]


def to_messages(wire: Sequence[WireMessage]) -> list[Message]:
    """Typed messages for a request's ``messages``."""
    names: dict[str, str] = {}
    out: list[Message] = []
    for message in wire:
        if isinstance(message, SystemWire):
            out.append(SystemMessage(content=text_of(message.content)))
        elif isinstance(message, UserWire):
            out.append(UserMessage(content=text_of(message.content)))
        elif isinstance(message, AssistantWire):
            calls = [_typed_call(call) for call in message.tool_calls or ()]
            names.update({call.id: call.function.name for call in message.tool_calls or ()})
            out.append(
                AssistantMessage(
                    content=text_of(message.content),
                    reasoning=message.reasoning_content,
                    tool_calls=[c for c in calls if isinstance(c, ToolCall)],
                    invalid_tool_calls=[c for c in calls if isinstance(c, InvalidToolCall)],
                )
            )
        elif isinstance(message, ToolWire):
            name = message.name or names.get(message.tool_call_id) or None
            out.append(
                ToolResultMessage(
                    tool_call_id=message.tool_call_id, name=name, content=text_of(message.content)
                )
            )
    return out


def _typed_call(call: WireToolCall) -> ToolCall | InvalidToolCall:
    name, text = call.function.name, call.function.arguments
    try:
        arguments = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError as exc:
        return InvalidToolCall(
            id=call.id, raw=text, error=f"the arguments are not valid JSON ({exc.msg})", name=name or None
        )
    if not isinstance(arguments, dict):
        raw = json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False)
        return InvalidToolCall(
            id=call.id, raw=raw, error="the arguments are not a JSON object", name=name or None
        )
    return ToolCall(id=call.id, name=name, arguments=arguments)


def prompt_tools(request: ChatCompletionRequest) -> list[dict[str, Any]]:
    """The tool schemas to render, after ``tool_choice``: ``none`` renders none, a named function only that
    one. The model is not constrained by a grammar, so ``required`` and a named choice are requests to it."""
    tools = [tool.model_dump(exclude_none=True) for tool in request.tools or ()]
    choice = request.tool_choice
    if choice == "none":
        return []
    if choice == "required" and not tools:
        raise InvalidRequestError(
            'tool_choice "required" needs at least one tool in "tools"', param="tool_choice"
        )
    if isinstance(choice, NamedToolChoice):
        chosen = [tool for tool in tools if tool["function"]["name"] == choice.function.name]
        if not chosen:
            raise InvalidRequestError(
                f"tool_choice names {choice.function.name!r}, which is not in tools", param="tool_choice"
            )
        return chosen
    return tools


def tool_call_wire(call: ToolCall | InvalidToolCall, index: int | None = None) -> dict[str, Any]:
    """One call in OpenAI's shape; ``index`` is set in stream deltas."""
    if isinstance(call, ToolCall):
        name, arguments = call.name, json.dumps(call.arguments, ensure_ascii=False)
    else:
        name, arguments = call.name or "", _invalid_arguments(call.raw)
    wire: dict[str, Any] = {
        "id": call.id,
        "type": "function",
        "function": {"name": name, "arguments": arguments},
    }
    return wire if index is None else {"index": index, **wire}


def _invalid_arguments(raw: str) -> str:
    try:
        payload = json.loads(raw)
    except json.JSONDecodeError:
        return raw
    if isinstance(payload, dict) and "arguments" in payload:
        return json.dumps(payload["arguments"], ensure_ascii=False)
    return raw


def finish_reason_of(engine_reason: str, has_tool_calls: bool) -> str:
    """OpenAI's finish reason: ``tool_calls`` for a turn that ended after calling tools."""
    if engine_reason == "stop" and has_tool_calls:
        return "tool_calls"
    return engine_reason


@dataclass(frozen=True)
class TurnUsage:
    """Token counts and PIPO decode statistics of one request."""

    prompt_tokens: int
    completion_tokens: int
    reasoning_tokens: int
    steps: int
    drafts_proposed: int
    drafts_committed: int
    tokens_per_step: float
    tau: float | None  # None for the AR engine, which drafts nothing
    prefix_cached_tokens: int


def usage_body(usage: TurnUsage) -> dict[str, Any]:
    """OpenAI's ``usage`` plus a ``pipo`` object with the decode statistics."""
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.prefix_cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "pipo": {
            "steps": usage.steps,
            "drafts_proposed": usage.drafts_proposed,
            "drafts_committed": usage.drafts_committed,
            "tokens_per_step": usage.tokens_per_step,
            "tau": usage.tau,
            "prefix_cached_tokens": usage.prefix_cached_tokens,
        },
    }
