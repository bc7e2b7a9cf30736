"""The agent's side of the memory store: opening and reopening runs, recording steps, compacting history.

The agent drives a :class:`~pipo_agent.memory.MemoryStore` (asyncio only) or a
:class:`~pipo_agent.memory.ThreadedMemoryStore` (any anyio backend, trio included) through
:class:`StoreCaller`. A :class:`Recorder` is one run's journal: :class:`StoreRecorder` writes each step to
the store in the order that makes a crash safe to resume (``begin_step``, ``record_tool_pending`` before a
tool runs, ``record_tool_result`` after, ``complete_step`` committing message and results in one
transaction); the base :class:`Recorder` records nothing, for agents without memory.

The thread holds the conversation (user, assistant and tool messages, as
:func:`~pipo_agent.messages.dump_message` writes them); the agent's system prompt is configuration, put in
front of the history on every request and never stored.

This module imports the memory package only when a store is used: it pulls in SQLAlchemy and Alembic.
"""

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import sniffio
from pydantic import ValidationError

from pipo_agent.backend import SamplingSettings
from pipo_agent.errors import AgentUsageError
from pipo_agent.messages import (
    AssistantMessage,
    Message,
    ToolResultMessage,
    Usage,
    dump_message,
    load_history,
    load_message,
)

if TYPE_CHECKING:
    from pipo_agent.memory import MemoryStore, ThreadedMemoryStore

__all__ = [
    "Recorder",
    "ResumedRun",
    "StoreCaller",
    "StoreRecorder",
    "add_usage",
    "compact_messages",
    "extractive_summary",
]

T = TypeVar("T")

SUMMARY_PREFIX = "[Summary of the earlier conversation]"
_CLIP = 200  # characters kept per summarized message: a summary line, not a copy
_USER_CLIP = 1000  # user messages state the task; keep more of them


class StoreCaller:
    """Runs store operations on either kind of store: ``await caller(lambda store: store.get_run(id))``."""

    def __init__(self, memory: "MemoryStore | ThreadedMemoryStore") -> None:
        from pipo_agent.memory import MemoryStore, ThreadedMemoryStore

        if isinstance(memory, ThreadedMemoryStore):
            self._threaded: ThreadedMemoryStore | None = memory
            self._direct: MemoryStore | None = None
        elif isinstance(memory, MemoryStore):
            self._threaded, self._direct = None, memory
        else:
            raise AgentUsageError(
                f"memory must be a MemoryStore or ThreadedMemoryStore, got {type(memory).__name__}"
            )

    def check_backend(self) -> None:
        """A plain MemoryStore runs on asyncio only (SQLAlchemy's async layer); say so before a run starts."""
        if self._direct is not None and sniffio.current_async_library() != "asyncio":
            raise AgentUsageError(
                "MemoryStore runs on asyncio only; on trio pass a ThreadedMemoryStore as memory"
            )

    async def __call__(self, operation: "Callable[[MemoryStore], Awaitable[T]]") -> T:
        if self._threaded is not None:
            return await self._threaded.call(operation)
        assert self._direct is not None
        return await operation(self._direct)


class Recorder:
    """A run's journal. This base records nothing (an agent without memory); see :class:`StoreRecorder`."""

    run_id: str | None = None
    thread_id: str | None = None

    async def begin_step(self, message: AssistantMessage) -> None:
        return None

    async def tool_pending(self, call_id: str) -> None:
        return None

    async def tool_result(self, result: ToolResultMessage) -> None:
        return None

    async def complete_step(
        self, results: Sequence[ToolResultMessage], usage: Usage, timings: dict[str, float]
    ) -> None:
        return None

    async def save_partial(
        self, message: AssistantMessage | None, results: Sequence[ToolResultMessage], usage: Usage
    ) -> None:
        return None

    async def finish(self, *, answered: bool, detail: str) -> None:
        return None

    async def fail(self, error: str) -> None:
        return None

    async def history(self) -> list[Message] | None:
        """The thread's stored history (``None`` without a store)."""
        return None

    async def compact(self, keep_last_n: int) -> bool:
        """Summarize all but the last ``keep_last_n`` stored messages; ``False`` without a store."""
        return False


@dataclass(frozen=True)
class ResumedRun:
    """What a resumed run starts from: its journal, history and settings, and how far it got."""

    recorder: "StoreRecorder"
    history: list[Message]
    task_type: str | None
    tau: float | None
    tau_explicit: bool
    sampling: SamplingSettings
    usage: Usage  # the completed steps and the open step's turn
    turns: list[AssistantMessage | None]  # each step's message (None once compacted away), open step last
    open_message: AssistantMessage | None  # the step that was running: its calls still need answers
    finished: dict[str, ToolResultMessage]  # results stored before the crash: reuse, never run again
    pending: frozenset[str]  # calls recorded pending: their outcome is unknown


class StoreRecorder(Recorder):
    """Writes one run to a store. ``step_id`` is the open step, between ``begin_step`` and its end."""

    def __init__(self, db: StoreCaller, run_id: str, thread_id: str) -> None:
        self.db = db
        self.run_id = self._run = run_id
        self.thread_id = self._thread = thread_id
        self.step_id: int | None = None

    @classmethod
    async def open_run(
        cls,
        db: StoreCaller,
        *,
        thread_id: str | None,
        task: str,
        task_type: str | None,
        config: dict[str, Any],
    ) -> "StoreRecorder":
        """Create the thread if needed, append the task as a user message, and start a run on it."""
        from pipo_agent.memory import NotFoundError

        async def start(store: "MemoryStore") -> tuple[str, str]:
            thread = thread_id
            try:
                if thread is None:
                    raise NotFoundError("no thread given")
                await store.get_thread(thread)
            except NotFoundError:
                thread = (await store.create_thread(title=task[:80], thread_id=thread)).id
            await store.append_message(thread, {"kind": "user", "content": task})
            run = await store.start_run(thread, task_type=task_type, config=config)
            return run.id, thread

        run_id, thread = await db(start)
        return cls(db, run_id, thread)

    @classmethod
    async def reopen_run(cls, db: StoreCaller, run_id: str) -> "ResumedRun":
        """Take up a run that did not finish (still ``running`` after a crash, or ``interrupted``)."""
        from pipo_agent.memory import RunStatus, StepStatus

        point = await db(lambda store: store.resume_point(run_id))
        status = point.run.status
        if status.is_final:
            raise AgentUsageError(f"run {run_id!r} is already {status.value}; only an unfinished run resumes")
        if status is RunStatus.INTERRUPTED:
            await db(lambda store: store.set_run_status(run_id, RunStatus.RUNNING))
        steps = await db(lambda store: store.list_steps(run_id))
        recorder = cls(db, run_id, point.run.thread_id)
        recorder.step_id = point.open_step.id if point.open_step is not None else None
        usage, turns = Usage(), []
        for step in steps:
            turn = _assistant(step.assistant_message)
            turns.append(turn)
            if step.status is StepStatus.COMPLETED:
                usage = add_usage(usage, _usage_of(step.usage))
            elif turn is not None:  # the open step: its usage is on its message until it completes
                usage = add_usage(usage, turn.usage or Usage())
        finished = {}
        for invocation in point.finished:
            result = load_message(invocation.result)
            assert isinstance(result, ToolResultMessage)
            finished[invocation.tool_call_id] = result
        config = point.run.config
        return ResumedRun(
            recorder=recorder,
            history=await recorder.history(),
            task_type=point.run.task_type,
            tau=config.get("tau"),
            tau_explicit=bool(config.get("tau_explicit", False)),
            sampling=_settings_of(config.get("sampling")),
            usage=usage,
            turns=turns,
            open_message=_assistant(point.open_step.assistant_message) if point.open_step else None,
            finished=finished,
            pending=frozenset(invocation.tool_call_id for invocation in point.pending),
        )

    async def begin_step(self, message: AssistantMessage) -> None:
        assert self.step_id is None, "a step is already open"
        run_id, payload = self._run, dump_message(message)
        self.step_id = (await self.db(lambda store: store.begin_step(run_id, payload))).id

    async def tool_pending(self, call_id: str) -> None:
        step_id = self._open()
        await self.db(lambda store: store.record_tool_pending(step_id, call_id))

    async def tool_result(self, result: ToolResultMessage) -> None:
        payload = dump_message(result)
        await self.db(lambda store: store.record_tool_result(payload))

    async def complete_step(
        self, results: Sequence[ToolResultMessage], usage: Usage, timings: dict[str, float]
    ) -> None:
        step_id, payloads = self._open(), [dump_message(r) for r in results]
        usage_dict = usage.model_dump(mode="json")
        await self.db(
            lambda s: s.complete_step(step_id, tool_results=payloads, usage=usage_dict, timings=timings)
        )
        self.step_id = None

    async def save_partial(
        self, message: AssistantMessage | None, results: Sequence[ToolResultMessage], usage: Usage
    ) -> None:
        run_id, payload = self._run, None if message is None else dump_message(message)
        payloads, usage_dict = [dump_message(r) for r in results], usage.model_dump(mode="json")
        await self.db(lambda s: s.save_partial_turn(run_id, payload, tool_results=payloads, usage=usage_dict))
        self.step_id = None

    async def finish(self, *, answered: bool, detail: str) -> None:
        from pipo_agent.memory import RunStatus

        status, error = (RunStatus.COMPLETED, None) if answered else (RunStatus.FAILED, detail)
        await self.db(lambda store: store.set_run_status(self._run, status, error=error))

    async def fail(self, error: str) -> None:
        from pipo_agent.memory import RunStatus

        await self.db(lambda store: store.set_run_status(self._run, RunStatus.FAILED, error=error))

    async def history(self) -> list[Message]:
        thread_id = self._thread
        return load_history(await self.db(lambda store: store.load_history(thread_id)))

    async def compact(self, keep_last_n: int) -> bool:
        thread_id = self._thread
        done = await self.db(lambda s: s.compact_history(thread_id, _summarize, keep_last_n=keep_last_n))
        return done is not None

    def _open(self) -> int:
        assert self.step_id is not None, "no step is open"
        return self.step_id


def add_usage(total: Usage, turn: Usage) -> Usage:
    """A run's usage after one more turn; the first turn's ``tau`` is kept (``Usage()`` has none)."""
    return turn if total == Usage() else total + turn


def _assistant(payload: dict[str, Any] | None) -> AssistantMessage | None:
    message = load_message(payload) if payload is not None else None
    return message if isinstance(message, AssistantMessage) else None


def _usage_of(data: dict[str, Any]) -> Usage:
    try:
        return Usage.model_validate(data) if data else Usage()
    except ValidationError:  # written by something else: unknown counts
        return Usage()


def _settings_of(data: object) -> SamplingSettings:
    try:
        return SamplingSettings.model_validate(data or {})
    except ValidationError:
        return SamplingSettings()


async def _summarize(messages: list[dict[str, Any]]) -> dict[str, Any]:
    return extractive_summary(messages)


def extractive_summary(messages: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One user message that lists what the summarized messages said, clipped, one line each.

    Extractive (no model call): user text, assistant answers and their tool calls, tool results. A call and
    its result are always summarized together, since compaction never cuts between them.
    """
    lines = [SUMMARY_PREFIX]
    for message in messages:
        kind = message.get("kind")
        if kind == "user":
            lines.append(f"- user: {_clip(message.get('content'), _USER_CLIP)}")
        elif kind == "assistant":
            calls = [
                f"{c['name']}({_clip(_json(c.get('arguments', {})), _CLIP)})"
                for c in message.get("tool_calls") or []
            ]
            said = _clip(message.get("content"), _CLIP)
            text = "; ".join(part for part in (said, "called " + ", ".join(calls) if calls else "") if part)
            lines.append(f"- assistant: {text or '(no text)'}")
        elif kind in ("tool", "tool_result"):
            error = " (error)" if message.get("is_error") else ""
            lines.append(
                f"- tool {message.get('name') or '?'}{error}: {_clip(message.get('content'), _CLIP)}"
            )
        else:
            lines.append(f"- {kind}: {_clip(message.get('content'), _CLIP)}")
    return {"kind": "user", "content": "\n".join(lines)}


def _clip(value: object, limit: int) -> str:
    text = " ".join(str(value if value is not None else "").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


def compact_messages(messages: Sequence[Message], keep_last_n: int) -> list[Message] | None:
    """In-memory compaction (an agent without a store): the same safe cut and summary as the store's."""
    from pipo_agent.memory.compaction import plan_compaction

    dumped = [dump_message(m) for m in messages]
    plan = plan_compaction(dumped, keep_last_n=keep_last_n, keep_system=False)
    if plan is None:
        return None
    summary = extractive_summary(dumped[plan.start : plan.cut])
    return [*messages[: plan.start], *load_history([summary]), *messages[plan.cut :]]
