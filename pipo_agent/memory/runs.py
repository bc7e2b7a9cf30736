"""Runs and steps: the statements behind durable, resumable agent runs.

A step is one model turn. ``begin_step`` stores the model's assistant message on the step; each tool call
is recorded before and after it runs (:mod:`~pipo_agent.memory.invocations`); ``complete_step`` moves the
assistant message and its results into the thread in one transaction. Every function runs inside the
caller's transaction and locks the run or step row it changes (``FOR UPDATE`` on PostgreSQL; SQLite's
``BEGIN IMMEDIATE`` already serializes writers).
"""

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from pipo_agent.memory import history, invocations
from pipo_agent.memory.errors import NotFoundError, StoreStateError
from pipo_agent.memory.models import MessageRow, RunRow, StepRow, ToolInvocationRow
from pipo_agent.memory.payload import MessageKind, tool_calls
from pipo_agent.memory.records import (
    Message,
    ResumePoint,
    Run,
    RunStatus,
    Step,
    StepStatus,
    ToolInvocation,
)


def run_record(row: RunRow) -> Run:
    return Run(
        row.id,
        row.thread_id,
        row.status,
        row.task_type,
        dict(row.config),
        row.started_at,
        row.finished_at,
        row.error,
    )


async def _lock_run(session: AsyncSession, run_id: str) -> RunRow:
    row = await session.scalar(select(RunRow).where(RunRow.id == run_id).with_for_update())
    if row is None:
        raise NotFoundError(f"no run {run_id!r}")
    return row


async def _open_step(session: AsyncSession, run_id: str) -> StepRow | None:
    query = select(StepRow).where(StepRow.run_id == run_id, StepRow.status == StepStatus.RUNNING)
    return await session.scalar(query.with_for_update())


async def start_run(
    session: AsyncSession,
    run_id: str,
    thread_id: str,
    task_type: str | None,
    config: dict[str, Any],
    now: datetime,
) -> Run:
    await history.get_thread(session, thread_id)
    row = RunRow(
        id=run_id,
        thread_id=thread_id,
        status=RunStatus.RUNNING,
        task_type=task_type,
        config=config,
        started_at=now,
        finished_at=None,
        error=None,
    )
    session.add(row)
    await session.flush()
    return run_record(row)


async def get_run(session: AsyncSession, run_id: str) -> Run:
    row = await session.get(RunRow, run_id)
    if row is None:
        raise NotFoundError(f"no run {run_id!r}")
    return run_record(row)


async def list_runs(session: AsyncSession, thread_id: str) -> list[Run]:
    await history.get_thread(session, thread_id)
    query = select(RunRow).where(RunRow.thread_id == thread_id).order_by(RunRow.started_at, RunRow.id)
    return [run_record(row) for row in await session.scalars(query)]


async def set_run_status(
    session: AsyncSession, run_id: str, status: RunStatus, error: str | None, now: datetime
) -> Run:
    """Final statuses never change; an interrupted run may run again. Finishing closes an open step."""
    row = await _lock_run(session, run_id)
    if row.status.is_final:
        raise StoreStateError(f"run {run_id!r} is already {row.status.value}")
    step = await _open_step(session, run_id)
    if step is not None and status is RunStatus.COMPLETED:
        raise StoreStateError(f"run {run_id!r} has an open step {step.index}; complete it first")
    if step is not None and status in (RunStatus.FAILED, RunStatus.CANCELLED):
        step.status = StepStatus.FAILED if status is RunStatus.FAILED else StepStatus.CANCELLED
        step.finished_at = now
    row.status = status
    row.error = error
    row.finished_at = None if status is RunStatus.RUNNING else now
    await session.flush()
    return run_record(row)


async def begin_step(session: AsyncSession, run_id: str, message: Message, now: datetime) -> StepRow:
    run = await _lock_run(session, run_id)
    if run.status is not RunStatus.RUNNING:
        raise StoreStateError(f"run {run_id!r} is {run.status.value}; steps need a running run")
    if (open_step := await _open_step(session, run_id)) is not None:
        raise StoreStateError(f"run {run_id!r} has an open step {open_step.index}; complete it first")
    call_ids = [call["id"] for call in tool_calls(message)]
    if call_ids:
        query = select(ToolInvocationRow.tool_call_id).where(ToolInvocationRow.tool_call_id.in_(call_ids))
        if taken := list(await session.scalars(query)):
            raise StoreStateError(f"tool call ids {taken} were used before; ids must be unique across runs")
    return await _insert_step(session, run_id, message, now)


async def _commit_message(
    session: AsyncSession, step: StepRow, message: Message, results: Sequence[Message], now: datetime
) -> None:
    run = await session.get_one(RunRow, step.run_id)
    kinds: list[MessageKind] = ["assistant"]
    kinds += ["tool_result"] * len(results)
    rows = await history.append(session, run.thread_id, [message, *results], kinds, [None] * len(kinds), now)
    step.assistant_message_id = rows[0].id


async def complete_step(
    session: AsyncSession,
    step_id: int,
    results: Sequence[Message],
    usage: dict[str, Any],
    timings: dict[str, Any],
    now: datetime,
) -> int:
    step = await invocations.lock_step(session, step_id)
    if step.status is not StepStatus.RUNNING:
        raise StoreStateError(f"step {step_id} is {step.status.value}; only a running step completes")
    assert step.pending_message is not None
    finished = await invocations.settle_results(session, step, results, now, require_all=True)
    await _commit_message(session, step, step.pending_message, finished, now)
    step.status, step.pending_message = StepStatus.COMPLETED, None
    step.usage, step.timings, step.finished_at = usage, timings, now
    await session.flush()
    return step.id


async def save_partial_turn(
    session: AsyncSession,
    run_id: str,
    message: Message | None,
    results: Sequence[Message],
    usage: dict[str, Any],
    timings: dict[str, Any],
    now: datetime,
) -> int | None:
    """Cancel the run, keeping what its last turn produced; see ``MemoryStore.save_partial_turn``."""
    run = await _lock_run(session, run_id)
    if run.status.is_final:
        raise StoreStateError(f"run {run_id!r} is already {run.status.value}")
    step = await _open_step(session, run_id)
    if step is None and message is not None:
        step = await _insert_step(session, run_id, message, now)
    if step is not None:
        if message is not None:
            step.pending_message = message
        assert step.pending_message is not None
        finished = await invocations.settle_results(session, step, results, now, require_all=False)
        kept = {result["tool_call_id"] for result in finished}
        partial = dict(step.pending_message)
        if "tool_calls" in partial:
            # Unanswered calls stay on the step and as pending invocations, never as orphans in history.
            partial["tool_calls"] = [c for c in tool_calls(step.pending_message) if c["id"] in kept]
        if any(partial.get(key) for key in ("content", "reasoning", "tool_calls", "invalid_tool_calls")):
            await _commit_message(session, step, partial, finished, now)
        step.status, step.finished_at = StepStatus.CANCELLED, now
        step.usage, step.timings = usage, timings
    run.status, run.finished_at = RunStatus.CANCELLED, now
    await session.flush()
    return None if step is None else step.id


async def _insert_step(session: AsyncSession, run_id: str, message: Message, now: datetime) -> StepRow:
    last = await session.scalar(select(func.max(StepRow.index)).where(StepRow.run_id == run_id))
    row = StepRow(
        run_id=run_id,
        index=0 if last is None else last + 1,
        status=StepStatus.RUNNING,
        pending_message=message,
        assistant_message_id=None,
        usage={},
        timings={},
        started_at=now,
        finished_at=None,
    )
    session.add(row)
    await session.flush()
    return row


def _steps_query() -> Select[tuple[StepRow, int | None, dict[str, Any] | None]]:
    # The committed assistant message lives in ``messages``; an open step still holds its own.
    return (
        select(StepRow, MessageRow.seq, MessageRow.payload)
        .outerjoin(MessageRow, StepRow.assistant_message_id == MessageRow.id)
        .order_by(StepRow.index)
    )


def _step_record(row: StepRow, seq: int | None, payload: dict[str, Any] | None) -> Step:
    message = row.pending_message if row.pending_message is not None else payload
    return Step(
        row.id,
        row.run_id,
        row.index,
        row.status,
        message,
        seq,
        dict(row.usage),
        dict(row.timings),
        row.started_at,
        row.finished_at,
    )


async def list_steps(session: AsyncSession, run_id: str) -> list[Step]:
    result = await session.execute(_steps_query().where(StepRow.run_id == run_id))
    return [_step_record(row, seq, payload) for row, seq, payload in result]


async def get_step(session: AsyncSession, step_id: int) -> Step:
    found = (await session.execute(_steps_query().where(StepRow.id == step_id))).one_or_none()
    if found is None:
        raise NotFoundError(f"no step {step_id}")
    row, seq, payload = found
    return _step_record(row, seq, payload)


async def resume_point(session: AsyncSession, run_id: str) -> ResumePoint:
    run = await get_run(session, run_id)
    steps = await list_steps(session, run_id)
    completed = [s for s in steps if s.status is StepStatus.COMPLETED]
    open_step = next((s for s in steps if s.status is StepStatus.RUNNING), None)
    finished: list[ToolInvocation] = []
    pending: list[ToolInvocation] = []
    not_started: list[Message] = []
    if open_step is not None:
        rows = await invocations.invocations_of(session, open_step.id)
        for call in tool_calls(open_step.assistant_message or {}):
            row = rows.get(call["id"])
            if row is None:
                not_started.append(call)
            else:
                (finished if row.status.is_finished else pending).append(invocations.invocation_record(row))
    return ResumePoint(
        run=run,
        last_completed_step=completed[-1] if completed else None,
        open_step=open_step,
        finished=tuple(finished),
        pending=tuple(pending),
        not_started=tuple(not_started),
        next_step_index=steps[-1].index + 1 if steps else 0,
    )
