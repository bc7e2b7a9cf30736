"""What the store returns: frozen snapshots, detached from any database session.

Messages themselves stay plain JSON dicts (``Message``) with a ``kind`` key, so the agent loop can plug in
its own typed serializer; see :mod:`~pipo_agent.memory.payload` for what the store checks.
"""

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

Message = dict[str, Any]
"""A serialized agent message: ``kind`` is one of ``system``, ``user``, ``assistant``, ``tool_result``."""


class RunStatus(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    # Stopped from outside (shutdown, crash noticed by a supervisor); may be set running again and resumed.
    INTERRUPTED = "interrupted"

    @property
    def is_final(self) -> bool:
        """Completed, failed and cancelled runs never change again."""
        return self in (RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED)


class StepStatus(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class ToolStatus(StrEnum):
    # Recorded before the tool ran: its side effect may or may not have happened.
    PENDING = "pending"
    COMPLETED = "completed"
    # The tool finished with an error result (``is_error``); the result is stored and reused all the same.
    FAILED = "failed"

    @property
    def is_finished(self) -> bool:
        return self is not ToolStatus.PENDING


@dataclass(frozen=True, slots=True)
class Thread:
    id: str
    title: str | None
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """A message with its place in the thread; ``seq`` grows by one per append and has gaps after compaction."""

    seq: int
    message: Message
    token_count: int | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Run:
    id: str
    thread_id: str
    status: RunStatus
    task_type: str | None
    config: dict[str, Any]
    started_at: datetime
    finished_at: datetime | None
    error: str | None


@dataclass(frozen=True, slots=True)
class Step:
    """One model turn and the tools it called.

    ``assistant_message`` is the model's message: held on the step while it runs, in the thread's history
    (at ``message_seq``) once the step has committed; ``None`` if compaction has since removed it.
    """

    id: int
    run_id: str
    index: int
    status: StepStatus
    assistant_message: Message | None
    message_seq: int | None
    usage: dict[str, Any]
    timings: dict[str, Any]
    started_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True, slots=True)
class ToolInvocation:
    """The idempotency record of one tool call; ``result`` is the ``tool_result`` message once finished."""

    id: int
    step_id: int
    tool_call_id: str
    name: str
    arguments: dict[str, Any]
    status: ToolStatus
    result: Message | None
    started_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True, slots=True)
class ResumePoint:
    """Where a run stands and exactly what is left to do in its open step.

    - ``finished``: tool calls whose results are stored; reuse them, never execute again.
    - ``pending``: recorded before execution, no result: the side effect may have happened. Re-execute only
      tools known to be idempotent; otherwise report the unknown outcome to the model.
    - ``not_started``: tool calls of the open step that were never recorded: safe to execute.
    """

    run: Run
    last_completed_step: Step | None
    open_step: Step | None
    finished: tuple[ToolInvocation, ...]
    pending: tuple[ToolInvocation, ...]
    not_started: tuple[Message, ...]
    next_step_index: int


@dataclass(frozen=True, slots=True)
class CompactionResult:
    """``removed`` messages (seqs ``first_seq``..``last_seq``) were replaced by one summary at ``summary_seq``."""

    summary_seq: int
    removed: int
    kept: int
    first_seq: int
    last_seq: int


@dataclass(frozen=True, slots=True)
class TaskProfile:
    """Storage for an adaptive per-task confidence threshold ``tau`` and the counts it is tuned from."""

    task_type: str
    tau: float
    drafts_proposed: int
    drafts_committed: int
    successes: int
    failures: int
    updated_at: datetime
