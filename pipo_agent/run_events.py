"""What an agent run reports: typed run events, the hooks that observe them, and the :class:`RunResult`.

The events of one run, in order (``step`` counts from 0 within the run)::

    RunStartEvent
    per step:  StepStartEvent, (ReasoningEvent | TextEvent | ToolCallEvent)*, StepUsageEvent,
               ToolResultEvent*, StepEndEvent
    RunEndEvent

Reasoning, answer text and tool calls arrive as they stream, in generation order; tool results arrive as
the tools finish (the history keeps them in call order). ``StepEndEvent`` comes once the step is committed
to memory. A resumed run starts with ``RunStartEvent(resumed=True)``; its open step, if any, reports only
its tool results (``reused=True`` for those that finished before the crash) and its end. A run stopped by a
timeout or :meth:`~pipo_agent.agent.RunStream.cancel` still ends with ``RunEndEvent``; one cancelled from
outside (a cancel scope, Ctrl-C) or failed by an error does not.
"""

import contextlib
import inspect
from collections.abc import Awaitable, Callable, Sequence
from enum import StrEnum
from types import TracebackType
from typing import Annotated, Final, Literal, Self

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectSendStream
from pydantic import BaseModel, ConfigDict, Field

from pipo_agent.errors import AgentUsageError
from pipo_agent.messages import AssistantMessage, InvalidToolCall, Message, ToolCall, ToolResultMessage, Usage

__all__ = [
    "Emit",
    "Hook",
    "ReasoningEvent",
    "RunEndEvent",
    "RunEvent",
    "RunResult",
    "RunStartEvent",
    "RunStream",
    "StepEndEvent",
    "StepStartEvent",
    "StepUsageEvent",
    "StopReason",
    "TextEvent",
    "ToolCallEvent",
    "ToolResultEvent",
    "emitter",
]

_EVENT_BUFFER: Final = 64  # events a slow consumer may lag behind before the run waits for it


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class StopReason(StrEnum):
    """Why a run ended. Only ``ANSWERED`` is a normal end; limits stop a run gracefully, with a result."""

    ANSWERED = "answered"  # a turn without tool calls that ended on its own
    TRUNCATED = "truncated"  # a turn without tool calls, cut off by max_tokens
    MAX_STEPS = "max_steps"  # the step cap was reached while the model still called tools
    TOKEN_BUDGET = "token_budget"  # the generated tokens (reasoning included) reached the budget
    TOOL_RETRIES = "tool_retries"  # more turns with mistaken tool calls than max_tool_retries allows
    WALL_TIMEOUT = "wall_timeout"  # the run took longer than wall_timeout_s
    IDLE_TIMEOUT = "idle_timeout"  # the backend sent nothing for idle_timeout_s
    CANCELLED = "cancelled"  # RunStream.cancel(), or the consumer left the stream early


class RunResult(_Model):
    """The outcome of a run. ``messages`` is the conversation as the model saw it (system prompt first),
    with the partial turn of an interrupted run; ``usage`` sums the run's turns."""

    run_id: str | None  # None without memory
    thread_id: str | None
    stop_reason: StopReason
    detail: str  # the stop reason in words
    output: str  # the content of the last assistant turn ("" if there was none)
    messages: list[Message]
    usage: Usage
    steps: int
    tool_mistakes: int  # turns with an invalid call, an unknown tool or invalid arguments
    tau: float | None
    task_type: str | None

    @property
    def answered(self) -> bool:
        return self.stop_reason is StopReason.ANSWERED


class RunStartEvent(_Model):
    kind: Literal["run_start"] = "run_start"
    run_id: str | None
    thread_id: str | None
    task_type: str | None
    tau: float | None  # the draft threshold of the run (None: the backend's default)
    resumed: bool = False


class StepStartEvent(_Model):
    kind: Literal["step_start"] = "step_start"
    step: int


class ReasoningEvent(_Model):
    kind: Literal["reasoning_delta"] = "reasoning_delta"
    step: int
    text: str


class TextEvent(_Model):
    kind: Literal["text_delta"] = "text_delta"
    step: int
    text: str


class ToolCallEvent(_Model):
    kind: Literal["tool_call"] = "tool_call"
    step: int
    call: ToolCall | InvalidToolCall


class ToolResultEvent(_Model):
    kind: Literal["tool_result"] = "tool_result"
    step: int
    result: ToolResultMessage
    reused: bool = False  # finished before a crash and taken from memory, not run again


class StepUsageEvent(_Model):
    kind: Literal["usage"] = "usage"
    step: int
    usage: Usage  # this turn
    total: Usage  # the run so far


class StepEndEvent(_Model):
    kind: Literal["step_end"] = "step_end"
    step: int
    message: AssistantMessage


class RunEndEvent(_Model):
    kind: Literal["run_end"] = "run_end"
    result: RunResult


RunEvent = Annotated[
    RunStartEvent
    | StepStartEvent
    | ReasoningEvent
    | TextEvent
    | ToolCallEvent
    | ToolResultEvent
    | StepUsageEvent
    | StepEndEvent
    | RunEndEvent,
    Field(discriminator="kind"),
]

Hook = Callable[[RunEvent], Awaitable[None] | None]
"""An observer of a run's events, sync or async, called in event order before the event is streamed.
Hooks are called one at a time; an exception from a hook fails the run."""

Emit = Callable[[RunEvent], Awaitable[None]]
Runner = Callable[[Emit, anyio.CancelScope], Awaitable[RunResult]]


def emitter(hooks: Sequence[Hook], send: MemoryObjectSendStream[RunEvent] | None = None) -> Emit:
    """The run's ``emit``: calls the hooks one event at a time (tools finish concurrently), then streams the
    event to ``send`` unless its consumer has left."""
    lock = anyio.Lock()

    async def emit(event: RunEvent) -> None:
        async with lock:
            for hook in hooks:
                outcome = hook(event)
                if inspect.isawaitable(outcome):
                    await outcome
            if send is not None:
                with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                    await send.send(event)

    return emit


class RunStream:
    """A run in progress, as an async context manager over its events.

    ``async with agent.stream(task) as run: async for event in run: ...``, then ``run.result``. The run goes
    on in a task of its own, at most a small buffer of events ahead of the consumer. Leaving the block
    before the run ends cancels it (its partial turn is saved); :meth:`cancel` does so at any time. Errors
    of the run are raised from the ``async with`` block.
    """

    def __init__(self, runner: Runner, hooks: Sequence[Hook] = ()) -> None:
        self._runner = runner
        self._hooks = list(hooks)
        self._result: RunResult | None = None
        self._group: TaskGroup | None = None
        self._scope: anyio.CancelScope | None = None
        self._cancelled = False

    async def __aenter__(self) -> Self:
        if self._group is not None:
            raise AgentUsageError("a RunStream is entered once")
        self._scope = anyio.CancelScope()
        if self._cancelled:
            self._scope.cancel()
        self._send, self._receive = anyio.create_memory_object_stream[RunEvent](_EVENT_BUFFER)
        self._group = anyio.create_task_group()
        await self._group.__aenter__()
        self._group.start_soon(self._produce, self._scope)
        return self

    async def _produce(self, scope: anyio.CancelScope) -> None:
        async with self._send:
            self._result = await self._runner(emitter(self._hooks, self._send), scope)

    def __aiter__(self) -> Self:
        if self._group is None:
            raise AgentUsageError("iterate a run inside `async with agent.stream(...) as run:`")
        return self

    async def __anext__(self) -> RunEvent:
        try:
            return await self._receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            raise StopAsyncIteration from None

    def cancel(self) -> None:
        """Stop the run now; it ends with ``stop_reason`` ``cancelled`` and its partial turn saved."""
        self._cancelled = True
        if self._scope is not None:
            self._scope.cancel()

    @property
    def result(self) -> RunResult:
        if self._result is None:
            raise AgentUsageError("the run has not ended; read the stream to its end first")
        return self._result

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        assert self._group is not None
        if self._result is None:
            self.cancel()
        self._receive.close()
        try:
            return await self._group.__aexit__(exc_type, exc, tb)
        except BaseExceptionGroup as group:
            if len(group.exceptions) == 1:  # the run's own error, not a group of one
                raise group.exceptions[0] from None
            raise
