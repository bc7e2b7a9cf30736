"""``MemoryStore``: conversation memory and durable agent runs in SQL (SQLite or PostgreSQL).

Each public method is one transaction over the statements in ``history``, ``runs``, ``invocations`` and
``profiles``; this file is the whole public surface in one place, hence its length. The store runs on
asyncio (SQLAlchemy's async layer and both drivers are asyncio-only); from trio use
:class:`~pipo_agent.memory.bridge.ThreadedMemoryStore`.

A durable step, as the agent loop drives it (after a crash, ``resume_point`` gives the open step)::

    step = await store.begin_step(run.id, assistant_message)     # the model's turn, not yet in history
    for call in assistant_message["tool_calls"]:
        seen = await store.get_tool_invocation(call["id"])
        if seen is not None and seen.result is not None:
            continue                                              # finished before a crash: reuse it
        if seen is not None:                                      # pending: it may have run already
            await store.record_tool_result(outcome_unknown(call)) # (or re-run a tool known idempotent)
            continue
        await store.record_tool_pending(step.id, call["id"])     # committed BEFORE the side effect
        await store.record_tool_result(await run_tool(call))     # committed AFTER it
    await store.complete_step(step.id, usage=usage)              # message + results in ONE transaction
"""

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self
from uuid import uuid4

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from pipo_agent.memory import history, invocations, profiles, runs
from pipo_agent.memory.compaction import plan_compaction
from pipo_agent.memory.engine import StoreURL, create_store_engine, parse_store_url
from pipo_agent.memory.errors import InvalidMessageError, StorageError, StoreMisuseError, StoreStateError
from pipo_agent.memory.langchain_format import to_langchain_dicts
from pipo_agent.memory.migrate import current_revision, head_revision, upgrade, upgrade_connection
from pipo_agent.memory.models import ID_LENGTH
from pipo_agent.memory.payload import check_message, check_messages, check_tool_result, tool_calls
from pipo_agent.memory.records import (
    CompactionResult,
    Message,
    ResumePoint,
    Run,
    RunStatus,
    Step,
    StoredMessage,
    TaskProfile,
    Thread,
    ToolInvocation,
)

Summarize = Callable[[list[Message]], Awaitable[Message]]
CountTokens = Callable[[Message], int]


class MemoryStore:
    """Open with ``await MemoryStore.open(url)`` or ``async with MemoryStore.open(url) as store``."""

    def __init__(self, engine: AsyncEngine, *, owns_engine: bool) -> None:
        self._engine = engine
        self._owns_engine = owns_engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    @classmethod
    def open(cls, url: StoreURL, *, migrate: bool = True, echo: bool = False) -> "_Opening":
        """Open a store at ``url`` (``sqlite+aiosqlite:///file.db``, ``postgresql+asyncpg://...``, or a path).

        ``migrate`` runs ``alembic upgrade head`` first; without it the schema must already be at head.
        """

        async def opening() -> MemoryStore:
            parsed = parse_store_url(url)
            if migrate:
                await upgrade(parsed)
            store = cls(create_store_engine(parsed, echo=echo), owns_engine=True)
            if not migrate:
                try:
                    await store._check_revision()
                except BaseException:
                    await store.close()
                    raise
            return store

        return _Opening(opening)

    @classmethod
    async def from_engine(cls, engine: AsyncEngine, *, migrate: bool = True) -> "MemoryStore":
        """A store on a caller-owned engine (not disposed by :meth:`close`).

        For SQLite, make the engine with :func:`~pipo_agent.memory.engine.create_store_engine`: it sets up
        WAL, the busy timeout, foreign keys and ``BEGIN IMMEDIATE``, which the store relies on.
        """
        store = cls(engine, owns_engine=False)
        if migrate:
            async with engine.connect() as connection:
                await upgrade_connection(connection)
        else:
            await store._check_revision()
        return store

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    async def close(self) -> None:
        if self._owns_engine:
            await self._engine.dispose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncSession]:
        try:
            async with self._sessions() as session, session.begin():
                yield session
        except (SQLAlchemyError, OSError) as exc:
            raise StorageError(f"memory store: {type(exc).__name__}: {exc}") from exc

    async def _check_revision(self) -> None:
        try:
            async with self._engine.connect() as connection:
                found = await current_revision(connection)
        except (SQLAlchemyError, OSError) as exc:
            raise StorageError(f"memory store: {type(exc).__name__}: {exc}") from exc
        if found != (head := head_revision()):
            raise StoreStateError(
                f"database schema is at {found!r}, this code needs {head!r}; open with migrate=True"
            )

    # Threads and history

    async def create_thread(
        self,
        *,
        title: str | None = None,
        metadata: dict[str, Any] | None = None,
        thread_id: str | None = None,
    ) -> Thread:
        async with self._transaction() as s:
            return await history.create_thread(
                s, _new_id(thread_id), title, _json_dict(metadata, "metadata"), _now()
            )

    async def get_thread(self, thread_id: str) -> Thread:
        async with self._transaction() as s:
            return await history.get_thread(s, thread_id)

    async def list_threads(self, *, limit: int = 100, offset: int = 0) -> list[Thread]:
        """Most recently updated first."""
        if limit < 0 or offset < 0:
            raise StoreMisuseError(f"limit and offset must be >= 0, got {limit} and {offset}")
        async with self._transaction() as s:
            return await history.list_threads(s, limit, offset)

    async def delete_thread(self, thread_id: str) -> None:
        """Delete a thread with its messages, runs, steps and tool invocations."""
        async with self._transaction() as s:
            await history.delete_thread(s, thread_id)

    async def append_messages(
        self, thread_id: str, messages: Sequence[Message], *, token_counts: Sequence[int | None] | None = None
    ) -> list[int]:
        """Append atomically (all or none); returns each message's ``seq``."""
        kinds = check_messages(messages)
        counts = list(token_counts) if token_counts is not None else [None] * len(messages)
        if len(counts) != len(messages):
            raise StoreMisuseError(f"{len(counts)} token counts for {len(messages)} messages")
        if not messages:
            return []
        async with self._transaction() as s:
            rows = await history.append(s, thread_id, messages, kinds, counts, _now())
            return [row.seq for row in rows]

    async def append_message(
        self, thread_id: str, message: Message, *, token_count: int | None = None
    ) -> int:
        return (await self.append_messages(thread_id, [message], token_counts=[token_count]))[0]

    async def load_messages(self, thread_id: str) -> list[StoredMessage]:
        async with self._transaction() as s:
            return [history.stored_record(row) for row in await history.load_rows(s, thread_id)]

    async def load_history(self, thread_id: str) -> list[Message]:
        """The thread's messages in order, as dicts."""
        return [stored.message for stored in await self.load_messages(thread_id)]

    async def export_langchain(self, thread_id: str) -> list[dict[str, Any]]:
        """The history as LangChain's ``messages_to_dict`` would write it (LangChain is not imported)."""
        return to_langchain_dicts(await self.load_history(thread_id))

    async def compact_history(
        self,
        thread_id: str,
        summarize: Summarize,
        *,
        keep_last_n: int | None = None,
        token_budget: int | None = None,
        count_tokens: CountTokens | None = None,
        keep_system: bool = True,
    ) -> CompactionResult | None:
        """Replace older messages by the one message ``summarize`` returns; ``None`` if nothing to compact.

        Give ``keep_last_n`` or ``token_budget``; the cut never separates a tool call from its results
        (see :mod:`~pipo_agent.memory.compaction`). Token counts come from the stored ``token_count``, else
        from ``count_tokens``. ``summarize`` runs outside any transaction; if the thread was compacted
        meanwhile, :class:`StoreStateError` is raised and nothing changes.
        """
        async with self._transaction() as s:
            rows = await history.load_rows(s, thread_id)
        messages = [row.payload for row in rows]
        counts = None
        if token_budget is not None:
            counts = [_token_count(row.token_count, row.payload, count_tokens) for row in rows]
        plan = plan_compaction(
            messages,
            keep_last_n=keep_last_n,
            token_budget=token_budget,
            token_counts=counts,
            keep_system=keep_system,
        )
        if plan is None:
            return None
        removed = rows[plan.start : plan.cut]
        summary = await summarize(messages[plan.start : plan.cut])
        kind = check_message(summary, "summary")
        if kind == "tool_result" or tool_calls(summary):
            raise InvalidMessageError("a summary must not be a tool result or carry tool calls")
        tokens = count_tokens(summary) if count_tokens is not None else None
        async with self._transaction() as s:
            seq = await history.replace_with_summary(s, thread_id, removed, summary, kind, tokens, _now())
        return CompactionResult(seq, len(removed), len(rows) - plan.cut, removed[0].seq, removed[-1].seq)

    # Runs, steps, tool invocations

    async def start_run(
        self,
        thread_id: str,
        *,
        task_type: str | None = None,
        config: dict[str, Any] | None = None,
        run_id: str | None = None,
    ) -> Run:
        if task_type is not None:
            profiles.check_task_type(task_type)
        async with self._transaction() as s:
            return await runs.start_run(
                s, _new_id(run_id), thread_id, task_type, _json_dict(config, "config"), _now()
            )

    async def get_run(self, run_id: str) -> Run:
        async with self._transaction() as s:
            return await runs.get_run(s, run_id)

    async def list_runs(self, thread_id: str) -> list[Run]:
        async with self._transaction() as s:
            return await runs.list_runs(s, thread_id)

    async def set_run_status(self, run_id: str, status: RunStatus, *, error: str | None = None) -> Run:
        """Mark a run completed, failed, cancelled or interrupted (or running again after an interruption).

        Completed, failed and cancelled are final. Failing or cancelling closes the open step the same way;
        completing requires no open step; interrupting leaves it open for :meth:`resume_point`.
        """
        if status not in set(RunStatus):
            raise StoreMisuseError(f"unknown run status {status!r}; one of {', '.join(RunStatus)}")
        async with self._transaction() as s:
            return await runs.set_run_status(s, run_id, RunStatus(status), error, _now())

    async def begin_step(self, run_id: str, assistant_message: Message) -> Step:
        """Open the run's next step with the model's message (held on the step until it completes)."""
        if check_message(assistant_message, "assistant_message") != "assistant":
            raise InvalidMessageError("begin_step takes the model's assistant message")
        async with self._transaction() as s:
            row = await runs.begin_step(s, run_id, assistant_message, _now())
            return await runs.get_step(s, row.id)

    async def record_tool_pending(self, step_id: int, tool_call_id: str) -> ToolInvocation:
        """Record a call of the step's assistant message before running it; returns the existing row if any."""
        async with self._transaction() as s:
            return await invocations.record_tool_pending(s, step_id, tool_call_id, _now())

    async def record_tool_result(self, result: Message) -> ToolInvocation:
        """Store a ``tool_result`` for its pending invocation; ``is_error`` results are stored as failed."""
        check_tool_result(result)
        async with self._transaction() as s:
            return await invocations.record_tool_result(s, result, _now())

    async def complete_step(
        self,
        step_id: int,
        *,
        tool_results: Sequence[Message] = (),
        usage: dict[str, Any] | None = None,
        timings: dict[str, Any] | None = None,
    ) -> Step:
        """Commit the step: its assistant message and every call's result go into the thread, in one
        transaction. Results not passed in ``tool_results`` must have been recorded already.

        ``usage``: token counts and PIPO decode statistics; ``timings``: seconds per phase.
        """
        async with self._transaction() as s:
            await runs.complete_step(
                s, step_id, tool_results, _json_dict(usage, "usage"), _json_dict(timings, "timings"), _now()
            )
            return await runs.get_step(s, step_id)

    async def save_partial_turn(
        self,
        run_id: str,
        message: Message | None = None,
        *,
        tool_results: Sequence[Message] = (),
        usage: dict[str, Any] | None = None,
        timings: dict[str, Any] | None = None,
    ) -> Step | None:
        """Keep what a cancelled turn produced and mark the run cancelled, in one transaction.

        ``message`` is the partial assistant message when generation was cut; if the run has an open step
        it replaces that step's message (left out, the step's own is kept). The message goes into the
        thread with only those tool calls that have a result, followed by the results; it is left out when
        that leaves nothing (no content, reasoning or calls). The step is marked cancelled; returns it, or
        ``None`` when there was no turn to keep. Call it under ``anyio.CancelScope(shield=True)``.
        """
        if message is not None and check_message(message, "message") != "assistant":
            raise InvalidMessageError("a partial turn is an assistant message")
        async with self._transaction() as s:
            step_id = await runs.save_partial_turn(
                s,
                run_id,
                message,
                tool_results,
                _json_dict(usage, "usage"),
                _json_dict(timings, "timings"),
                _now(),
            )
            return None if step_id is None else await runs.get_step(s, step_id)

    async def list_steps(self, run_id: str) -> list[Step]:
        async with self._transaction() as s:
            await runs.get_run(s, run_id)
            return await runs.list_steps(s, run_id)

    async def get_tool_invocation(self, tool_call_id: str) -> ToolInvocation | None:
        async with self._transaction() as s:
            return await invocations.get_invocation(s, tool_call_id)

    async def get_tool_result(self, tool_call_id: str) -> Message | None:
        """The stored ``tool_result`` of a finished call; ``None`` if the call is unknown or still pending."""
        invocation = await self.get_tool_invocation(tool_call_id)
        return None if invocation is None else invocation.result

    async def resume_point(self, run_id: str) -> ResumePoint:
        """Where the run stands: its last completed step and what its open step still needs."""
        async with self._transaction() as s:
            return await runs.resume_point(s, run_id)

    # Task profiles

    async def get_task_profile(self, task_type: str) -> TaskProfile | None:
        async with self._transaction() as s:
            return await profiles.get_profile(s, profiles.check_task_type(task_type))

    async def upsert_task_profile(self, task_type: str, *, tau: float) -> TaskProfile:
        """Create the profile (counters at zero) or set its ``tau``."""
        task_type, tau = profiles.check_task_type(task_type), profiles.check_tau(tau)
        async with self._transaction() as s:
            return await profiles.upsert_profile(s, task_type, tau, _now())

    async def add_task_counts(
        self,
        task_type: str,
        *,
        drafts_proposed: int = 0,
        drafts_committed: int = 0,
        successes: int = 0,
        failures: int = 0,
    ) -> TaskProfile:
        """Add to the profile's counters atomically and return the updated profile."""
        deltas = dict(
            drafts_proposed=drafts_proposed,
            drafts_committed=drafts_committed,
            successes=successes,
            failures=failures,
        )
        profiles.check_deltas(deltas)
        async with self._transaction() as s:
            return await profiles.add_counts(s, profiles.check_task_type(task_type), deltas, _now())


class _Opening:
    """What :meth:`MemoryStore.open` returns: await it, or use it as ``async with``."""

    def __init__(self, opening: Callable[[], Awaitable[MemoryStore]]) -> None:
        self._opening = opening
        self._store: MemoryStore | None = None

    def __await__(self) -> Generator[Any, None, MemoryStore]:
        return self._opening().__await__()

    async def __aenter__(self) -> MemoryStore:
        self._store = await self._opening()
        return self._store

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._store is not None
        await self._store.close()


def _json_dict(value: dict[str, Any] | None, name: str) -> dict[str, Any]:
    """A copy of a JSON object argument; checked here so that a bad value is misuse, not a storage error."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise StoreMisuseError(f"{name} must be a dict, got {type(value).__name__}")
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise StoreMisuseError(f"{name} is not JSON-serializable: {exc}") from exc
    return dict(value)


def _new_id(given: str | None) -> str:
    if given is None:
        return uuid4().hex
    if not isinstance(given, str) or not 0 < len(given) <= ID_LENGTH:
        raise StoreMisuseError(f"an id must be a string of 1..{ID_LENGTH} characters, got {given!r}")
    return given


def _now() -> datetime:
    return datetime.now(UTC)


def _token_count(stored: int | None, message: Message, count_tokens: CountTokens | None) -> int:
    if stored is not None:
        return stored
    if count_tokens is None:
        raise StoreMisuseError("token_budget needs count_tokens for messages stored without a token count")
    return count_tokens(message)
