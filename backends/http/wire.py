"""The OpenAI chat wire format, client side: a :class:`ChatRequest` as a request body, and a stream's chunks
as the protocol's typed events.

Out: typed messages become OpenAI messages (assistant turns carry ``reasoning_content`` and ``tool_calls``
with JSON-text ``arguments``; an invalid call goes back with its raw text as ``arguments``, so the model
sees what it wrote). ``tau`` and ``task_type`` go as extra body fields, only when set (to SGLang: ``tau`` in
``custom_params``).

In: ``delta.reasoning_content`` (or ``delta.reasoning``, as some servers name it) becomes
:class:`ReasoningDelta`, ``delta.content`` :class:`TextDelta`, and the pieces of each ``delta.tool_calls``
index are joined into one :class:`ToolCallDelta` once the call is complete (when another index, other
content, or the finish arrives); arguments that are not a JSON object make an :class:`InvalidToolCall`.
``usage`` (with ``completion_tokens_details.reasoning_tokens`` and our server's ``pipo`` statistics) becomes
one :class:`UsageEvent` before the :class:`FinishEvent`.
"""

import json
from dataclasses import dataclass
from typing import Any, assert_never

from pydantic import ValidationError

from pipo_agent.backend import (
    ChatRequest,
    FinishEvent,
    ReasoningDelta,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    UsageEvent,
)
from pipo_agent.backends.http.config import HttpBackendConfig
from pipo_agent.backends.http.errors import StreamFormatError
from pipo_agent.messages import (
    AssistantMessage,
    FinishReason,
    InvalidToolCall,
    Message,
    SystemMessage,
    ToolCall,
    ToolResultMessage,
    Usage,
    UserMessage,
    new_tool_call_id,
)

__all__ = ["ChunkDecoder", "chat_body", "parse_tool_call", "wire_message"]

_STOPS = frozenset({"stop", "tool_calls", "function_call", "content_filter"})


def chat_body(request: ChatRequest, config: HttpBackendConfig) -> dict[str, Any]:
    """The streamed chat request for ``request`` (usage requested in the stream)."""
    s = request.sampling
    body: dict[str, Any] = {
        "model": config.model,
        "messages": [wire_message(message) for message in request.messages],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if request.tools:
        body["tools"] = list(request.tools)
    optional = {
        "temperature": s.temperature,
        "top_p": s.top_p,
        "top_k": s.top_k,
        "max_tokens": s.max_tokens,
        "seed": s.seed,
    }
    if config.dialect == "sglang":
        if s.tau is not None:
            body["custom_params"] = {"tau": s.tau}
    else:
        optional |= {"tau": s.tau, "task_type": s.task_type}
    body.update({name: value for name, value in optional.items() if value is not None})
    if s.stop:
        body["stop"] = list(s.stop)
    body.update(config.extra_body)
    return body


def wire_message(message: Message) -> dict[str, Any]:
    if isinstance(message, SystemMessage):
        return {"role": "system", "content": message.content}
    if isinstance(message, UserMessage):
        return {"role": "user", "content": message.content}
    if isinstance(message, ToolResultMessage):
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.content}
    if isinstance(message, AssistantMessage):
        wire: dict[str, Any] = {"role": "assistant", "content": message.content}
        if message.reasoning is not None:
            wire["reasoning_content"] = message.reasoning
        calls = [_call(c.id, c.name, json.dumps(c.arguments, ensure_ascii=False)) for c in message.tool_calls]
        calls += [_call(c.id, c.name or "", c.raw) for c in message.invalid_tool_calls]
        if calls:
            wire["tool_calls"] = calls
        return wire
    assert_never(message)


def _call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def parse_tool_call(call_id: str | None, name: str, arguments: str) -> ToolCall | InvalidToolCall:
    """A complete streamed call; anything but a named call with a JSON-object argument is invalid."""
    call_id = call_id or new_tool_call_id()
    try:
        parsed = json.loads(arguments) if arguments.strip() else {}
    except json.JSONDecodeError as exc:
        error = f"the arguments of the call to {name or '(no name)'} are not valid JSON ({exc.msg})"
        return InvalidToolCall(id=call_id, raw=arguments, error=error, name=name or None)
    if not isinstance(parsed, dict):
        error = f"the arguments of the call to {name or '(no name)'} must be a JSON object"
        return InvalidToolCall(id=call_id, raw=arguments, error=error, name=name or None)
    if not name:
        return InvalidToolCall(id=call_id, raw=arguments, error="the tool call names no function")
    return ToolCall(id=call_id, name=name, arguments=parsed)


@dataclass
class _PartialCall:
    id: str | None = None
    name: str = ""
    arguments: str = ""


class ChunkDecoder:
    """Turns one stream's chunks (parsed JSON) into events: :meth:`feed` each, then :meth:`finish` once."""

    def __init__(self) -> None:
        self._calls: dict[int, _PartialCall] = {}
        self._usage: Usage | None = None
        self._finish: FinishReason | None = None

    def feed(self, chunk: Any) -> list[StreamEvent]:
        if not isinstance(chunk, dict):
            raise StreamFormatError(f"a stream chunk must be a JSON object, got {type(chunk).__name__}")
        error = chunk.get("error")
        if error is not None:
            message = error.get("message") if isinstance(error, dict) else error
            raise StreamFormatError(f"the server reported an error mid-stream: {message}")
        if chunk.get("usage"):
            self._usage = _usage(chunk["usage"])
        out: list[StreamEvent] = []
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            out += self._delta(choice.get("delta") or {})
            reason = choice.get("finish_reason")
            if reason:
                out += self._flush()
                self._finish = _finish_reason(reason)
        return out

    def finish(self) -> list[StreamEvent]:
        """The events after the last chunk; raises if the stream ended without a finish reason."""
        if self._finish is None:
            raise StreamFormatError("the stream ended without a finish reason (was it cut off?)")
        out = self._flush()
        if self._usage is not None:
            out.append(UsageEvent(usage=self._usage))
        out.append(FinishEvent(finish_reason=self._finish))
        return out

    def _delta(self, delta: dict[str, Any]) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        content = delta.get("content")
        if reasoning or content:
            out += self._flush()
        if reasoning:
            out.append(ReasoningDelta(text=reasoning))
        if content:
            out.append(TextDelta(text=content))
        for piece in delta.get("tool_calls") or ():
            index = int(piece.get("index", 0))
            if index not in self._calls:
                out += self._flush()
                self._calls[index] = _PartialCall()
            call, function = self._calls[index], piece.get("function") or {}
            call.id = call.id or piece.get("id")
            call.name += function.get("name") or ""
            call.arguments += function.get("arguments") or ""
        return out

    def _flush(self) -> list[StreamEvent]:
        calls, self._calls = self._calls, {}
        return [
            ToolCallDelta(call=parse_tool_call(c.id, c.name, c.arguments)) for _, c in sorted(calls.items())
        ]


def _usage(data: Any) -> Usage:
    try:
        details = data.get("completion_tokens_details") or {}
        pipo = data.get("pipo") or {}
        return Usage(
            prompt_tokens=data.get("prompt_tokens") or 0,
            completion_tokens=data.get("completion_tokens") or 0,
            reasoning_tokens=details.get("reasoning_tokens") or 0,
            steps=pipo.get("steps"),
            drafts_proposed=pipo.get("drafts_proposed"),
            drafts_committed=pipo.get("drafts_committed"),
            tokens_per_step=pipo.get("tokens_per_step"),
            tau=pipo.get("tau"),
        )
    except (AttributeError, ValidationError) as exc:
        raise StreamFormatError(f"the stream's usage is malformed: {data!r}") from exc


def _finish_reason(reason: str) -> FinishReason:
    if reason in _STOPS:
        return FinishReason.STOP
    if reason == "length":
        return FinishReason.LENGTH
    raise StreamFormatError(f"the server ended the turn with finish_reason {reason!r}")
