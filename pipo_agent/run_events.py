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

from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from pipo_agent.messages import AssistantMessage, InvalidToolCall, Message, ToolCall, ToolResultMessage, Usage

__all__ = [
    "Hook",
    "ReasoningEvent",
    "RunEndEvent",
    "RunEvent",
    "RunResult",
    "RunStartEvent",
    "StepEndEvent",
    "StepStartEvent",
    "StepUsageEvent",
    "StopReason",
    "TextEvent",
    "ToolCallEvent",
    "ToolResultEvent",
]


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
