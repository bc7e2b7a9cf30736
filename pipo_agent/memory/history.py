"""Threads and their messages: the statements behind the store's history operations.

Every function runs inside the caller's transaction. Appends lock the thread row first (an UPDATE of
``updated_at``), so concurrent appends to one thread take turns and ``seq`` stays gap-free per append.
"""

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from pipo_agent.memory.errors import NotFoundError, StoreStateError
from pipo_agent.memory.models import MessageRow, ThreadRow
from pipo_agent.memory.payload import MessageKind
from pipo_agent.memory.records import Message, StoredMessage, Thread


def thread_record(row: ThreadRow) -> Thread:
    return Thread(row.id, row.title, dict(row.meta), row.created_at, row.updated_at)


def stored_record(row: MessageRow) -> StoredMessage:
    return StoredMessage(row.seq, row.payload, row.token_count, row.created_at)


async def create_thread(
    session: AsyncSession, thread_id: str, title: str | None, metadata: dict[str, Any], now: datetime
) -> Thread:
    row = ThreadRow(id=thread_id, title=title, meta=metadata, created_at=now, updated_at=now)
    session.add(row)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise StoreStateError(f"thread {thread_id!r} already exists") from exc
    return thread_record(row)


async def get_thread(session: AsyncSession, thread_id: str) -> Thread:
    row = await session.get(ThreadRow, thread_id)
    if row is None:
        raise NotFoundError(f"no thread {thread_id!r}")
    return thread_record(row)


async def list_threads(session: AsyncSession, limit: int, offset: int) -> list[Thread]:
    query = select(ThreadRow).order_by(ThreadRow.updated_at.desc(), ThreadRow.id).limit(limit).offset(offset)
    return [thread_record(row) for row in await session.scalars(query)]


async def delete_thread(session: AsyncSession, thread_id: str) -> None:
    # Runs, steps, invocations and messages go with it (ON DELETE CASCADE).
    deleted = await session.scalar(delete(ThreadRow).where(ThreadRow.id == thread_id).returning(ThreadRow.id))
    if deleted is None:
        raise NotFoundError(f"no thread {thread_id!r}")


async def lock_thread(session: AsyncSession, thread_id: str, now: datetime) -> None:
    """Touch ``updated_at``; the row lock this takes on PostgreSQL serializes writers of the thread."""
    statement = (
        update(ThreadRow)
        .where(ThreadRow.id == thread_id)
        .values(updated_at=now)
        .returning(ThreadRow.id)
        .execution_options(synchronize_session=False)
    )
    if await session.scalar(statement) is None:
        raise NotFoundError(f"no thread {thread_id!r}")


async def append(
    session: AsyncSession,
    thread_id: str,
    messages: Sequence[Message],
    kinds: Sequence[MessageKind],
    token_counts: Sequence[int | None],
    now: datetime,
) -> list[MessageRow]:
    """Insert messages after the thread's last one; the caller has validated them (``kinds``)."""
    await lock_thread(session, thread_id, now)
    last = await session.scalar(select(func.max(MessageRow.seq)).where(MessageRow.thread_id == thread_id))
    rows = [
        MessageRow(
            thread_id=thread_id,
            seq=(last or 0) + 1 + i,
            kind=kind,
            tool_call_id=message["tool_call_id"] if kind == "tool_result" else None,
            payload=message,
            token_count=count,
            created_at=now,
        )
        for i, (message, kind, count) in enumerate(zip(messages, kinds, token_counts, strict=True))
    ]
    session.add_all(rows)
    await session.flush()
    return rows


async def load_rows(session: AsyncSession, thread_id: str) -> list[MessageRow]:
    if await session.get(ThreadRow, thread_id) is None:
        raise NotFoundError(f"no thread {thread_id!r}")
    query = select(MessageRow).where(MessageRow.thread_id == thread_id).order_by(MessageRow.seq)
    return list(await session.scalars(query))


async def replace_with_summary(
    session: AsyncSession,
    thread_id: str,
    removed: Sequence[MessageRow],
    summary: Message,
    kind: MessageKind,
    token_count: int | None,
    now: datetime,
) -> int:
    """Delete ``removed`` (consecutive, as read earlier) and put ``summary`` at the first one's seq."""
    await lock_thread(session, thread_id, now)
    first, last = removed[0].seq, removed[-1].seq
    in_range = MessageRow.thread_id == thread_id, MessageRow.seq.between(first, last)
    current = set(await session.scalars(select(MessageRow.id).where(*in_range)))
    if current != {row.id for row in removed}:
        raise StoreStateError(f"thread {thread_id!r} was compacted concurrently; read it again and retry")
    # Core DELETE, then INSERT: the summary reuses a deleted seq, which the unique index allows only after.
    await session.execute(delete(MessageRow).where(*in_range).execution_options(synchronize_session=False))
    session.add(
        MessageRow(
            thread_id=thread_id,
            seq=first,
            kind=kind,
            tool_call_id=None,
            payload=summary,
            token_count=token_count,
            created_at=now,
        )
    )
    await session.flush()
    return first
