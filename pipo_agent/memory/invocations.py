"""Tool invocations: the idempotency records that keep a resumed run from repeating a side effect.

A call is recorded ``pending`` before the tool runs and finished (``completed``, or ``failed`` for an
``is_error`` result) after; ``tool_call_id`` is unique across all runs. A finished result never changes:
recording it again is a no-op, recording a different one an error. Every function runs inside the
caller's transaction.
"""

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from pipo_agent.memory.errors import NotFoundError, StoreMisuseError, StoreStateError
from pipo_agent.memory.models import StepRow, ToolInvocationRow
from pipo_agent.memory.payload import answerable_ids, check_tool_result, is_error_result, tool_calls
from pipo_agent.memory.records import Message, StepStatus, ToolInvocation, ToolStatus


def invocation_record(row: ToolInvocationRow) -> ToolInvocation:
    return ToolInvocation(
        row.id,
        row.step_id,
        row.tool_call_id,
        row.name,
        dict(row.arguments),
        row.status,
        row.result,
        row.started_at,
        row.finished_at,
    )


async def lock_step(session: AsyncSession, step_id: int) -> StepRow:
    row = await session.scalar(select(StepRow).where(StepRow.id == step_id).with_for_update())
    if row is None:
        raise NotFoundError(f"no step {step_id}")
    return row


async def invocations_of(session: AsyncSession, step_id: int) -> dict[str, ToolInvocationRow]:
    rows = await session.scalars(select(ToolInvocationRow).where(ToolInvocationRow.step_id == step_id))
    return {row.tool_call_id: row for row in rows}


async def record_tool_pending(
    session: AsyncSession, step_id: int, tool_call_id: str, now: datetime
) -> ToolInvocation:
    step = await lock_step(session, step_id)
    existing = await session.scalar(
        select(ToolInvocationRow).where(ToolInvocationRow.tool_call_id == tool_call_id)
    )
    if existing is not None:
        if existing.step_id != step_id:
            raise StoreStateError(
                f"tool call {tool_call_id!r} belongs to step {existing.step_id}, not {step_id}"
            )
        return invocation_record(existing)
    if step.status is not StepStatus.RUNNING:
        raise StoreStateError(f"step {step_id} is {step.status.value}; it takes no new tool calls")
    call = _find_call(step, tool_call_id)
    row = ToolInvocationRow(
        step_id=step_id,
        tool_call_id=tool_call_id,
        name=call["name"],
        arguments=call.get("arguments", {}),
        status=ToolStatus.PENDING,
        result=None,
        started_at=now,
        finished_at=None,
    )
    session.add(row)
    await session.flush()
    return invocation_record(row)


def _find_call(step: StepRow, tool_call_id: str) -> dict[str, Any]:
    for call in tool_calls(step.pending_message or {}):
        if call["id"] == tool_call_id:
            return call
    raise StoreMisuseError(f"step {step.id}'s assistant message has no tool call {tool_call_id!r}")


def _same(a: Message, b: Message) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def finish(row: ToolInvocationRow, result: Message, now: datetime) -> None:
    if row.status.is_finished:
        assert row.result is not None
        if not _same(row.result, result):
            raise StoreStateError(f"tool call {row.tool_call_id!r} already has a different result")
        return
    row.status = ToolStatus.FAILED if is_error_result(result) else ToolStatus.COMPLETED
    row.result = result
    row.finished_at = now


async def record_tool_result(session: AsyncSession, result: Message, now: datetime) -> ToolInvocation:
    """Always allowed, even on a cancelled step: a finished side effect is a fact worth keeping."""
    call_id = result["tool_call_id"]
    query = select(ToolInvocationRow).where(ToolInvocationRow.tool_call_id == call_id).with_for_update()
    row = await session.scalar(query)
    if row is None:
        raise NotFoundError(f"no tool invocation {call_id!r}; record it pending before running the tool")
    finish(row, result, now)
    await session.flush()
    return invocation_record(row)


async def settle_results(
    session: AsyncSession, step: StepRow, given: Sequence[Message], now: datetime, *, require_all: bool
) -> list[Message]:
    """Store the given results; return the step's results in call order.

    Every runnable call needs a result when ``require_all``; an invalid call (one that never runs) may have
    one, which goes to the history but not to ``tool_invocations``.
    """
    message = step.pending_message or {}
    calls, answerable = tool_calls(message), answerable_ids(message)
    by_id: dict[str, Message] = {}
    for i, given_result in enumerate(given):
        call_id = check_tool_result(given_result, f"tool_results[{i}]")["tool_call_id"]
        if call_id in by_id or call_id not in answerable:
            raise StoreMisuseError(
                f"tool_results[{i}]: {call_id!r} is a duplicate or not a call of step {step.id}"
            )
        by_id[call_id] = given_result
    rows = await invocations_of(session, step.id)
    finished: list[Message] = []
    for call in calls:
        row, result = rows.get(call["id"]), by_id.get(call["id"])
        if row is None and result is not None:
            row = ToolInvocationRow(
                step_id=step.id,
                tool_call_id=call["id"],
                name=call["name"],
                arguments=call.get("arguments", {}),
                status=ToolStatus.PENDING,
                result=None,
                started_at=now,
                finished_at=None,
            )
            session.add(row)
        if row is not None and result is not None:
            finish(row, result, now)
        if row is not None and row.result is not None:
            finished.append(row.result)
        elif require_all:
            raise StoreStateError(f"tool call {call['id']!r} of step {step.id} has no result")
    runnable = {c["id"] for c in calls}
    finished += [by_id[i] for i in answerable if i not in runnable and i in by_id]
    await session.flush()
    return finished


async def get_invocation(session: AsyncSession, tool_call_id: str) -> ToolInvocation | None:
    query = select(ToolInvocationRow).where(ToolInvocationRow.tool_call_id == tool_call_id)
    row = await session.scalar(query)
    return None if row is None else invocation_record(row)
