"""The PIPO backend's text format: prompt rendering and an incremental parser of the generated turn.

The prompt is :func:`pipo_agent.tasks.chat_format.render_chat` of :func:`~pipo_agent.messages.to_chat_dicts`
with the generation prompt (``<|im_start|>assistant\\n<think>\\n``), so a turn is generated from inside the
think block: ``{reasoning}\\n</think>\\n{content}\\n<tool_call>\\n{json}\\n</tool_call>...``.

:class:`StreamParser` consumes that output in chunks of any size (tags may be split anywhere) and emits
typed events. It holds back any tail that could still grow into a tag, so reasoning never leaks into the
answer text and tool-call JSON never reaches it either; the events of a split text, merged, equal those of
the whole text. One newline on each side of a tag belongs to the format and is dropped. Nothing the model
writes makes it raise: a malformed ``<tool_call>`` block becomes an :class:`InvalidToolCall`.
"""

import json
from collections.abc import Callable, Mapping, Sequence
from enum import StrEnum
from typing import Any, Final

from pipo_agent.backend import ReasoningDelta, TextDelta, ToolCallDelta
from pipo_agent.messages import InvalidToolCall, Message, ToolCall, new_tool_call_id, to_chat_dicts
from pipo_agent.tasks.chat_format import THINK_END, THINK_START, TOOL_CALL_END, TOOL_CALL_START, render_chat

__all__ = ["ParsedEvent", "StreamParser", "parse_output", "parse_tool_call", "render_prompt"]

ParsedEvent = ReasoningDelta | TextDelta | ToolCallDelta


def render_prompt(messages: Sequence[Message], tools: Sequence[Mapping[str, Any]] = ()) -> str:
    """The prompt text for the next assistant turn, tool list included, ending in the generation prompt."""
    return render_chat(to_chat_dicts(messages), tools=list(tools) or None, add_generation_prompt=True)


class _Channel(StrEnum):
    REASONING = "reasoning"
    TEXT = "text"
    TOOL_CALL = "tool_call"


# The tags that leave each channel, and where they lead.
_TRANSITIONS: Final[dict[_Channel, dict[str, _Channel]]] = {
    _Channel.REASONING: {THINK_END: _Channel.TEXT},
    _Channel.TEXT: {TOOL_CALL_START: _Channel.TOOL_CALL, THINK_START: _Channel.REASONING},
    _Channel.TOOL_CALL: {TOOL_CALL_END: _Channel.TEXT},
}


class StreamParser:
    """Incremental parser of one generated turn: :meth:`feed` chunks, then :meth:`finish` once.

    ``in_reasoning`` says whether the output starts inside the think block (true after our generation
    prompt). ``new_call_id`` makes the ids of parsed calls (valid or not).
    """

    def __init__(
        self, *, in_reasoning: bool = True, new_call_id: Callable[[], str] = new_tool_call_id
    ) -> None:
        self._channel = _Channel.REASONING if in_reasoning else _Channel.TEXT
        self._new_call_id = new_call_id
        self._pending = ""  # text not yet emitted: a possible partial tag, or a tool call's body
        self._strip_newline = False  # drop one "\n" at the start of what comes next
        self._finished = False

    def feed(self, chunk: str) -> list[ParsedEvent]:
        """Events completed by ``chunk``; may hold back a tail that could start a tag."""
        if self._finished:
            raise RuntimeError("StreamParser.feed after finish")
        self._pending += chunk
        out: list[ParsedEvent] = []
        while self._pending:
            if self._strip_newline:
                self._pending = self._pending.removeprefix("\n")
                self._strip_newline = False
            found = self._find_tag()
            if found is None:
                if self._channel is not _Channel.TOOL_CALL:
                    keep = len(self._pending) - self._partial_tag_length()
                    self._emit(out, self._pending[:keep])
                    self._pending = self._pending[keep:]
                break
            start, tag = found
            body = self._pending[:start].removesuffix("\n")
            self._pending = self._pending[start + len(tag) :]
            self._strip_newline = True
            if self._channel is _Channel.TOOL_CALL:
                out.append(ToolCallDelta(call=parse_tool_call(body, self._new_call_id())))
            else:
                self._emit(out, body)
            self._channel = _TRANSITIONS[self._channel][tag]
        return out

    def finish(self) -> list[ParsedEvent]:
        """The held-back tail at the end of the turn; an unclosed tool call is reported as invalid."""
        self._finished = True
        tail, self._pending = self._pending, ""
        if self._strip_newline:
            tail = tail.removeprefix("\n")
        out: list[ParsedEvent] = []
        if self._channel is _Channel.TOOL_CALL:
            call = InvalidToolCall(
                id=self._new_call_id(),
                raw=tail,
                error=f"the tool call block is not closed with {TOOL_CALL_END} (was the turn cut off?)",
            )
            out.append(ToolCallDelta(call=call))
        else:
            self._emit(out, tail)
        return out

    def _find_tag(self) -> tuple[int, str] | None:
        hits = [(self._pending.find(tag), tag) for tag in _TRANSITIONS[self._channel]]
        return min(((start, tag) for start, tag in hits if start >= 0), default=None)

    def _partial_tag_length(self) -> int:
        """Length of the longest tail of the pending text that is a proper prefix of a tag (or of "\\n" + tag)."""
        text = self._pending
        markers = [m for tag in _TRANSITIONS[self._channel] for m in (tag, "\n" + tag)]
        return max((k for m in markers for k in range(1, len(m)) if text.endswith(m[:k])), default=0)

    def _emit(self, out: list[ParsedEvent], text: str) -> None:
        if not text:
            return
        if self._channel is _Channel.REASONING:
            out.append(ReasoningDelta(text=text))
        elif self._channel is _Channel.TEXT:
            out.append(TextDelta(text=text))


def parse_tool_call(raw: str, call_id: str) -> ToolCall | InvalidToolCall:
    """The call in one block's text: a JSON object with a string ``name`` and an object ``arguments``
    (absent arguments mean ``{}``); anything else is an :class:`InvalidToolCall` that says what is wrong."""
    try:
        payload = json.loads(raw)
    except json.JSONDecodeError as exc:
        return InvalidToolCall(id=call_id, raw=raw, error=f"the tool call is not valid JSON ({exc.msg})")
    if not isinstance(payload, dict) or not isinstance(payload.get("name"), str):
        error = 'a tool call must be a JSON object with a string "name" and an object "arguments"'
        return InvalidToolCall(id=call_id, raw=raw, error=error)
    name: str = payload["name"]
    arguments = payload.get("arguments", {})
    if not isinstance(arguments, dict):
        error = f'the "arguments" of a call to {name} must be a JSON object, got {_json_type(arguments)}'
        return InvalidToolCall(id=call_id, raw=raw, error=error, name=name)
    return ToolCall(id=call_id, name=name, arguments=arguments)


def parse_output(
    text: str, *, in_reasoning: bool = True, new_call_id: Callable[[], str] = new_tool_call_id
) -> list[ParsedEvent]:
    """The events of a whole generated turn (what :class:`StreamParser` emits for it in one chunk)."""
    parser = StreamParser(in_reasoning=in_reasoning, new_call_id=new_call_id)
    return parser.feed(text) + parser.finish()


def _json_type(value: Any) -> str:
    names = {str: "a string", bool: "a boolean", int: "a number", float: "a number", list: "an array"}
    return "null" if value is None else names.get(type(value), type(value).__name__)
