"""Test doubles for the backend protocol: no model, no network, fully deterministic.

:class:`ScriptedBackend` replays scripted assistant turns, one per request, as streamed chunks. A turn given
as text is raw model output in the PIPO format (``{reasoning}\\n</think>\\n{content}<tool_call>...``) and
goes through the real :class:`~pipo_agent.chat_format.StreamParser`, cut into ``chunk_size`` pieces so that
tags arrive split; a turn given as an :class:`AssistantMessage` is streamed field by field. Every request
is recorded in ``requests`` for assertions.
"""

import itertools
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass

import anyio

from pipo_agent.backend import (
    ChatBackend,
    ChatRequest,
    FinishEvent,
    ReasoningDelta,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    UsageEvent,
)
from pipo_agent.chat_format import ParsedEvent, StreamParser, render_prompt
from pipo_agent.errors import ScriptExhaustedError
from pipo_agent.messages import AssistantMessage, FinishReason, InvalidToolCall, ToolCall, Usage
from pipo_agent.tasks.chat_format import THINK_END

__all__ = ["ScriptedBackend", "ScriptedTurn"]


@dataclass(frozen=True)
class ScriptedTurn:
    """One scripted turn with its finish reason; ``usage=None`` counts characters as tokens."""

    output: str | AssistantMessage
    finish_reason: FinishReason = FinishReason.STOP
    usage: Usage | None = None


class ScriptedBackend(ChatBackend):
    """A test double that answers the n-th request with the n-th scripted turn.

    A script item may also be an exception, raised when its turn is requested (to test backend failures).
    Tool-call ids are ``call_1``, ``call_2``, ... across the whole script. ``chunk_delay`` seconds pass
    before each chunk (zero still yields to the event loop, so a run can be cancelled mid-turn).
    """

    def __init__(
        self,
        script: Sequence[str | AssistantMessage | ScriptedTurn | BaseException],
        *,
        chunk_size: int = 3,
        chunk_delay: float = 0.0,
    ) -> None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self._script = list(script)
        self._chunk_size = chunk_size
        self._chunk_delay = chunk_delay
        self._call_ids = (f"call_{n}" for n in itertools.count(1))
        self.requests: list[ChatRequest] = []

    @property
    def remaining(self) -> int:
        """Scripted turns not yet replayed."""
        return len(self._script) - len(self.requests)

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        index = len(self.requests)
        self.requests.append(request)
        if index >= len(self._script):
            raise ScriptExhaustedError(
                f"the script has {len(self._script)} turns; request {index + 1} has none"
            )
        item = self._script[index]
        if isinstance(item, BaseException):
            raise item
        turn = item if isinstance(item, ScriptedTurn) else ScriptedTurn(item)
        for event in self._events(turn.output):
            await anyio.sleep(self._chunk_delay)
            yield event
        yield UsageEvent(usage=turn.usage if turn.usage is not None else _char_usage(request, turn.output))
        yield FinishEvent(finish_reason=turn.finish_reason)

    def _events(self, output: str | AssistantMessage) -> Iterator[ParsedEvent]:
        if isinstance(output, str):
            parser = StreamParser(new_call_id=lambda: next(self._call_ids))
            for chunk in _chunks(output, self._chunk_size):
                yield from parser.feed(chunk)
            yield from parser.finish()
            return
        for chunk in _chunks(output.reasoning or "", self._chunk_size):
            yield ReasoningDelta(text=chunk)
        for chunk in _chunks(output.content, self._chunk_size):
            yield TextDelta(text=chunk)
        calls: list[ToolCall | InvalidToolCall] = [*output.tool_calls, *output.invalid_tool_calls]
        for call in calls:
            yield ToolCallDelta(call=call)


def _chunks(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def _char_usage(request: ChatRequest, output: str | AssistantMessage) -> Usage:
    if isinstance(output, str):
        completion, reasoning = len(output), len(output.partition(THINK_END)[0])
    else:
        reasoning = len(output.reasoning or "")
        calls = sum(len(c.model_dump_json()) for c in [*output.tool_calls, *output.invalid_tool_calls])
        completion = reasoning + len(output.content) + calls
    prompt = len(render_prompt(request.messages, request.tools))
    return Usage(prompt_tokens=prompt, completion_tokens=completion, reasoning_tokens=reasoning)
