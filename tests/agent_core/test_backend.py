"""The backend protocol: requests and settings, typed events, and the scripted test backend."""

from collections.abc import AsyncIterator

import anyio
import pytest
from pydantic import TypeAdapter, ValidationError

from pipo_agent.backend import (
    ChatBackend,
    ChatRequest,
    FinishEvent,
    ReasoningDelta,
    SamplingSettings,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    TurnAccumulator,
    UsageEvent,
    aclose_stream,
)
from pipo_agent.chat_format import render_prompt
from pipo_agent.errors import BackendError, ScriptExhaustedError
from pipo_agent.messages import (
    AssistantMessage,
    FinishReason,
    InvalidToolCall,
    ToolCall,
    Usage,
    UserMessage,
)
from pipo_agent.testing import ScriptedBackend, ScriptedTurn

pytestmark = pytest.mark.anyio

REQUEST = ChatRequest(messages=[UserMessage(content="What is 37 * 48?")])
TOOL_TURN = (
    "I should multiply.\n</think>\nLet me check.\n"
    '<tool_call>\n{"name": "calculator", "arguments": {"expression": "37 * 48"}}\n</tool_call>'
)


def test_settings_merge_takes_what_the_override_set() -> None:
    agent = SamplingSettings(temperature=0.7, top_k=20, stop=["\n\n"], tau=0.4)
    run = SamplingSettings(temperature=0.0, seed=3)
    assert agent.merged(run) == SamplingSettings(temperature=0.0, top_k=20, stop=["\n\n"], tau=0.4, seed=3)
    assert agent.merged(SamplingSettings()) == agent


def test_settings_reject_unknown_keys_and_bad_values() -> None:
    with pytest.raises(ValidationError, match="temprature"):
        SamplingSettings.model_validate({"temprature": 0.5})
    with pytest.raises(ValidationError, match="top_p"):
        SamplingSettings(top_p=0.0)


def test_stream_events_round_trip_by_kind() -> None:
    adapter: TypeAdapter[list[StreamEvent]] = TypeAdapter(list[StreamEvent])
    events: list[StreamEvent] = [
        ReasoningDelta(text="r"),
        TextDelta(text="t"),
        ToolCallDelta(call=ToolCall(id="c1", name="f", arguments={"a": [1, 2]})),
        ToolCallDelta(call=InvalidToolCall(id="c2", raw="{", error="bad")),
        UsageEvent(usage=Usage(prompt_tokens=3, steps=2)),
        FinishEvent(finish_reason=FinishReason.LENGTH),
    ]
    assert adapter.validate_json(adapter.dump_json(events)) == events


def test_accumulator_builds_the_turn_and_checks_the_contract() -> None:
    accumulator = TurnAccumulator()
    events: list[StreamEvent] = [
        ReasoningDelta(text="a"),
        ReasoningDelta(text="b"),
        TextDelta(text="Hi"),
        ToolCallDelta(call=ToolCall(id="c1", name="f")),
        ToolCallDelta(call=InvalidToolCall(id="c2", raw="{", error="bad")),
        UsageEvent(usage=Usage(completion_tokens=5)),
        FinishEvent(finish_reason=FinishReason.STOP),
    ]
    for event in events:
        accumulator.add(event)
    result = accumulator.result()
    assert result.message == AssistantMessage(
        content="Hi",
        reasoning="ab",
        tool_calls=[ToolCall(id="c1", name="f")],
        invalid_tool_calls=[InvalidToolCall(id="c2", raw="{", error="bad")],
        usage=Usage(completion_tokens=5),
        finish_reason=FinishReason.STOP,
    )
    with pytest.raises(BackendError, match="after the finish"):
        accumulator.add(TextDelta(text="late"))
    unfinished = TurnAccumulator()
    unfinished.add(TextDelta(text="x"))
    with pytest.raises(BackendError, match="without a finish event"):
        unfinished.result()
    no_reasoning = TurnAccumulator()
    no_reasoning.add(FinishEvent(finish_reason=FinishReason.STOP))
    assert no_reasoning.result().message.reasoning is None


async def test_scripted_text_turn_streams_split_tags_and_completes(anyio_backend: str) -> None:
    backend = ScriptedBackend([TOOL_TURN], chunk_size=2)
    events = [event async for event in backend.stream(REQUEST)]
    assert sum(isinstance(e, ReasoningDelta) for e in events) > 1  # really streamed in pieces
    assert isinstance(events[-2], UsageEvent)
    assert events[-1] == FinishEvent(finish_reason=FinishReason.STOP)
    assert backend.requests == [REQUEST]
    assert backend.remaining == 0

    result = await ScriptedBackend([TOOL_TURN], chunk_size=1).complete(REQUEST)
    assert result.message.reasoning == "I should multiply."
    assert result.message.content == "Let me check."
    assert result.message.tool_calls == [
        ToolCall(id="call_1", name="calculator", arguments={"expression": "37 * 48"})
    ]
    assert result.usage.prompt_tokens == len(render_prompt(REQUEST.messages))
    assert result.usage.completion_tokens == len(TOOL_TURN)
    assert result.usage.reasoning_tokens == len("I should multiply.\n")


async def test_scripted_message_turns_finish_reasons_and_failures(anyio_backend: str) -> None:
    message = AssistantMessage(
        content="Answer: 1776",
        reasoning="easy",
        tool_calls=[ToolCall(id="x1", name="f")],
    )
    usage = Usage(prompt_tokens=1, completion_tokens=2, steps=1)
    backend = ScriptedBackend(
        [ScriptedTurn(message, FinishReason.LENGTH, usage), BackendError("server went away")]
    )
    result = await backend.complete(REQUEST)
    expected = message.model_copy(update={"usage": usage, "finish_reason": FinishReason.LENGTH})
    assert result.message == expected
    assert result.finish_reason is FinishReason.LENGTH
    with pytest.raises(BackendError, match="server went away"):
        await backend.complete(REQUEST)
    with pytest.raises(ScriptExhaustedError, match="the script has 2 turns; request 3 has none"):
        await backend.complete(REQUEST)


async def test_a_slow_stream_can_be_cancelled_and_closed(anyio_backend: str) -> None:
    backend = ScriptedBackend(["x" * 100], chunk_size=1, chunk_delay=0.01)
    seen: list[StreamEvent] = []
    with anyio.move_on_after(0.1) as scope:
        async for event in backend.stream(REQUEST):
            seen.append(event)
    assert scope.cancelled_caught
    assert 0 < len(seen) < 100


class _Closing(ChatBackend):
    def __init__(self) -> None:
        self.closed_streams = 0
        self.closed = False

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        try:
            yield TextDelta(text="a")
            yield TextDelta(text="b")
            yield FinishEvent(finish_reason=FinishReason.STOP)
        finally:
            self.closed_streams += 1

    async def aclose(self) -> None:
        self.closed = True


async def test_streams_are_closed_early_and_backends_by_async_with(anyio_backend: str) -> None:
    async with _Closing() as backend:
        assert (await backend.complete(REQUEST)).message.content == "ab"
        events = backend.stream(REQUEST)
        async for _ in events:
            break
        await aclose_stream(events)
        assert backend.closed_streams == 2
    assert backend.closed
