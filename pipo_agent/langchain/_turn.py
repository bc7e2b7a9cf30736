"""One model call as LangChain sees it: tries of a turn checked against :class:`TurnRules`, as chunks or a
result. Runs on the loop that owns the backend (see :mod:`pipo_agent.langchain._host`).

When nothing is checked the backend's events stream through live. When something is (a forced
``tool_choice``, a ``response_format``), each try is held back until it passes, so a consumer never sees
a rejected try; a try that fails is answered with the problem and generated again, ``max_retries`` times
at most. Usage sums every try (what the call really cost); the metadata says how many there were.
"""

import json
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Final

import anyio
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk
from langchain_core.outputs import ChatResult as LCChatResult

from pipo_agent.backend import (
    ChatBackend,
    ChatRequest,
    FinishEvent,
    StreamEvent,
    ToolCallDelta,
    TurnAccumulator,
    UsageEvent,
    aclose_stream,
)
from pipo_agent.langchain._chunks import ChunkBuilder, response_metadata, usage_metadata
from pipo_agent.langchain._rules import ToolChoiceMode, TurnRules
from pipo_agent.langchain.convert import to_ai_message
from pipo_agent.langchain.errors import ToolChoiceError
from pipo_agent.messages import InvalidToolCall, Message, ToolCall, Usage, UserMessage

__all__ = ["TurnCall", "generate", "stream_chunks"]

_CLOSE_TIMEOUT_S: Final = 10.0
_NO_CALLS: Final = "tool_choice is 'none': no tool may be called"


@dataclass(frozen=True)
class TurnCall:
    """Everything one call needs, prepared (and validated) on the caller's side."""

    request: ChatRequest  # instructed messages, the tools to show, the sampling settings
    rules: TurnRules
    model_name: str
    max_retries: int = 2
    timeout: float | None = None  # seconds for the whole call, every try included
    v1: bool = False  # LangChain's output_version="v1"


@dataclass
class _Tries:
    count: int = 0
    usage: Usage = field(default_factory=Usage)

    def add(self, usage: Usage) -> None:
        self.usage = usage if self.count == 0 else self.usage + usage
        self.count += 1


async def stream_chunks(backend: ChatBackend, call: TurnCall) -> AsyncIterator[ChatGenerationChunk]:
    """The accepted try as LangChain chunks, the last one with usage and metadata."""
    tries = _Tries()
    builder = ChunkBuilder(v1=call.v1, model_name=call.model_name, task_type=call.request.sampling.task_type)
    async with aclosing(_events(backend, call, tries)) as events:  # closes the backend stream here, now
        async for event in events:
            if isinstance(event, FinishEvent):
                builder.attempts = tries.count
            chunk = builder.add(event)
            if chunk is not None:
                yield ChatGenerationChunk(message=chunk)


async def generate(backend: ChatBackend, call: TurnCall) -> LCChatResult:
    """The accepted try as one ``AIMessage`` (invalid calls keep their errors here)."""
    tries = _Tries()
    accumulator = TurnAccumulator()
    async with aclosing(_events(backend, call, tries)) as events:
        async for event in events:
            accumulator.add(event)
    turn = accumulator.result()
    meta = response_metadata(
        turn.usage,
        turn.finish_reason,
        model_name=call.model_name,
        attempts=tries.count,
        task_type=call.request.sampling.task_type,
    )
    message = to_ai_message(turn.message, usage_metadata=usage_metadata(turn.usage), response_metadata=meta)
    info = {"finish_reason": turn.finish_reason.value}
    return LCChatResult(generations=[ChatGeneration(message=message, generation_info=info)])


async def _events(backend: ChatBackend, call: TurnCall, tries: _Tries) -> AsyncGenerator[StreamEvent, None]:
    """The events of the accepted try, then one ``UsageEvent`` (all tries) and its ``FinishEvent``."""
    rules = call.rules
    deadline = anyio.current_time() + call.timeout if call.timeout is not None else None
    messages: list[Message] = list(call.request.messages)
    for attempt in range(call.max_retries + 1):
        request = call.request.model_copy(update={"messages": messages})
        accumulator = TurnAccumulator()
        held: list[StreamEvent] = []
        events = backend.stream(request)
        try:
            while True:
                with anyio.fail_after(_remaining(deadline)):
                    try:
                        event = await anext(events)
                    except StopAsyncIteration:
                        break
                if rules.tool_choice.mode is ToolChoiceMode.NONE:
                    event = _refuse_call(event)
                accumulator.add(event)
                if isinstance(event, UsageEvent | FinishEvent):
                    continue
                if rules.checked:
                    held.append(event)
                else:
                    yield event
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(_CLOSE_TIMEOUT_S):
                await aclose_stream(events)
        turn = accumulator.result()
        tries.add(turn.usage)
        problem = rules.problem(turn.message) if rules.checked else None
        if problem is not None and attempt < call.max_retries:
            messages = [
                *messages,
                turn.message.model_copy(update={"usage": None}),
                UserMessage(content=problem),
            ]
            continue
        if problem is not None and rules.tool_choice.forced:
            raise ToolChoiceError(
                f"the model made no call that tool_choice requires in {tries.count} tries: {problem}",
                to_ai_message(turn.message),
            )
        for event in held:
            yield event
        yield UsageEvent(usage=tries.usage)
        yield FinishEvent(finish_reason=turn.finish_reason)
        return


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else deadline - anyio.current_time()


def _refuse_call(event: StreamEvent) -> StreamEvent:
    """A valid call made while ``tool_choice`` is "none" becomes an invalid one."""
    if isinstance(event, ToolCallDelta) and isinstance(event.call, ToolCall):
        call = event.call
        raw = json.dumps({"name": call.name, "arguments": call.arguments}, ensure_ascii=False)
        return ToolCallDelta(call=InvalidToolCall(id=call.id, raw=raw, error=_NO_CALLS, name=call.name))
    return event
