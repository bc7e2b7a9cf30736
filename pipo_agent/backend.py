"""The backend protocol: a request, typed stream events, and the small :class:`ChatBackend` ABC.

A backend turns a :class:`ChatRequest` (history, tool schemas, sampling settings) into one assistant turn.
It implements :meth:`ChatBackend.stream`, an async generator of :data:`StreamEvent`; :meth:`ChatBackend.complete`
collects the same events into a :class:`ChatResult`. The event contract:

- ``ReasoningDelta`` / ``TextDelta`` / ``ToolCallDelta`` in generation order (reasoning never arrives as
  text; a tool call arrives once, complete, parsed or invalid),
- then at most one ``UsageEvent``,
- then exactly one ``FinishEvent``, last.

Backend failures are raised as :class:`~pipo_agent.errors.BackendError` (third-party errors mapped once, at
the backend). Consumers that may stop early close the stream (``contextlib.aclosing`` or :func:`aclose_stream`)
so the backend's cleanup (closing an HTTP stream, freeing a decode slot) runs at once. Implementations must not yield from
inside a task group or cancel scope of their own; use a memory object stream for that.
"""

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Annotated, Any, Literal, Self, assert_never

from pydantic import BaseModel, ConfigDict, Field

from pipo_agent.errors import BackendError
from pipo_agent.messages import AssistantMessage, FinishReason, InvalidToolCall, Message, ToolCall, Usage

__all__ = [
    "ChatBackend",
    "ChatRequest",
    "ChatResult",
    "FinishEvent",
    "ReasoningDelta",
    "SamplingSettings",
    "StreamEvent",
    "TextDelta",
    "ToolCallDelta",
    "TurnAccumulator",
    "UsageEvent",
    "aclose_stream",
]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SamplingSettings(_Model):
    """How to sample one turn; ``None`` leaves a setting to the backend's default.

    ``tau`` is PIPO's draft acceptance threshold and ``task_type`` selects a calibrated per-task threshold;
    backends without them ignore both. Settings merge: ``defaults.merged(override)`` takes every field that
    ``override`` set explicitly.
    """

    temperature: float | None = Field(default=None, ge=0.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    top_k: int | None = Field(default=None, ge=1)
    max_tokens: int | None = Field(default=None, ge=1)
    stop: list[str] = Field(default_factory=list)
    seed: int | None = None
    tau: float | None = None
    task_type: str | None = None

    def merged(self, override: "SamplingSettings") -> "SamplingSettings":
        """These settings with the fields that ``override`` set explicitly replaced."""
        return self.model_copy(update={name: getattr(override, name) for name in override.model_fields_set})


class ChatRequest(_Model):
    """One turn to generate: the history so far, the tools the model may call, and sampling settings.

    ``tools`` are OpenAI-style function schemas (``{"type": "function", "function": {...}}``), as
    :meth:`pipo_agent.toolset.Toolset.schemas` returns them.
    """

    messages: list[Message]
    tools: list[dict[str, Any]] = Field(default_factory=list)
    sampling: SamplingSettings = Field(default_factory=SamplingSettings)


class ReasoningDelta(_Model):
    """Text generated inside the think block."""

    kind: Literal["reasoning_delta"] = "reasoning_delta"
    text: str


class TextDelta(_Model):
    """Answer text (outside the think block and tool-call blocks)."""

    kind: Literal["text_delta"] = "text_delta"
    text: str


class ToolCallDelta(_Model):
    """One complete tool-call block: a parsed :class:`ToolCall`, or an :class:`InvalidToolCall`."""

    kind: Literal["tool_call"] = "tool_call"
    call: ToolCall | InvalidToolCall


class UsageEvent(_Model):
    """Token counts (and decode statistics) of the turn."""

    kind: Literal["usage"] = "usage"
    usage: Usage


class FinishEvent(_Model):
    """The last event of a turn."""

    kind: Literal["finish"] = "finish"
    finish_reason: FinishReason


StreamEvent = Annotated[
    ReasoningDelta | TextDelta | ToolCallDelta | UsageEvent | FinishEvent,
    Field(discriminator="kind"),
]


class ChatResult(_Model):
    """A complete turn; ``message`` carries the usage and the finish reason too."""

    message: AssistantMessage
    usage: Usage
    finish_reason: FinishReason


class TurnAccumulator:
    """Builds a :class:`ChatResult` from a turn's events, for consumers that also forward the events."""

    def __init__(self) -> None:
        self._text: list[str] = []
        self._reasoning: list[str] | None = None
        self._calls: list[ToolCall] = []
        self._invalid: list[InvalidToolCall] = []
        self._usage: Usage | None = None
        self._finish: FinishReason | None = None

    def add(self, event: StreamEvent) -> None:
        if self._finish is not None:
            raise BackendError(f"a {event.kind} event arrived after the finish event")
        if isinstance(event, ReasoningDelta):
            if self._reasoning is None:
                self._reasoning = []
            self._reasoning.append(event.text)
        elif isinstance(event, TextDelta):
            self._text.append(event.text)
        elif isinstance(event, ToolCallDelta):
            call = event.call
            if isinstance(call, ToolCall):
                self._calls.append(call)
            else:
                self._invalid.append(call)
        elif isinstance(event, UsageEvent):
            self._usage = event.usage
        elif isinstance(event, FinishEvent):
            self._finish = event.finish_reason
        else:
            assert_never(event)

    def result(self) -> ChatResult:
        """The turn; raises ``BackendError`` if the stream did not end with a finish event."""
        if self._finish is None:
            raise BackendError("the backend's stream ended without a finish event")
        usage = self._usage if self._usage is not None else Usage()
        message = self.partial().model_copy(update={"usage": usage})
        return ChatResult(message=message, usage=usage, finish_reason=self._finish)

    def partial(self) -> AssistantMessage:
        """The turn so far, for a stream that was cut (``finish_reason`` and ``usage`` stay ``None``
        until their events arrived); never raises."""
        return AssistantMessage(
            content="".join(self._text),
            reasoning="".join(self._reasoning) if self._reasoning is not None else None,
            tool_calls=list(self._calls),
            invalid_tool_calls=list(self._invalid),
            usage=self._usage,
            finish_reason=self._finish,
        )


async def aclose_stream(events: AsyncIterator[StreamEvent]) -> None:
    """Close a stream early if it can be closed (async generators can), running the backend's cleanup."""
    aclose = getattr(events, "aclose", None)
    if aclose is not None:
        await aclose()


class ChatBackend(ABC):
    """A model reached through the backend protocol. Use as ``async with backend:`` to release it."""

    @abstractmethod
    def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        """The events of one generated turn (see the module docstring for their order)."""

    async def complete(self, request: ChatRequest) -> ChatResult:
        """The whole turn at once: :meth:`stream` collected by a :class:`TurnAccumulator`."""
        accumulator = TurnAccumulator()
        events = self.stream(request)
        try:
            async for event in events:
                accumulator.add(event)
        finally:
            await aclose_stream(events)
        return accumulator.result()

    async def aclose(self) -> None:
        """Release the backend's resources (connections, engines); the default holds none."""
        return None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()
