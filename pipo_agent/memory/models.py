"""The SQL schema as SQLAlchemy 2.0 declarative models; Alembic's revisions in ``migrations/`` create it.

threads ─┬─< messages            one row per message, ``seq`` unique per thread
         └─< runs ──< steps ──< tool_invocations
                         └──> messages (the step's assistant message, once committed)
task_profiles                    one row per task type: adaptive threshold ``tau`` and its counters

A change here needs a new revision; ``tests/memory/test_migrations.py`` fails while the two disagree.
"""

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Dialect,
    Enum,
    Float,
    ForeignKey,
    Index,
    MetaData,
    String,
    Text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from pipo_agent.memory.records import RunStatus, StepStatus, ToolStatus

# Stable constraint names on both dialects, so later revisions can refer to them.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# JSONB on PostgreSQL (binary, indexable); JSON text on SQLite.
JSONType = JSON().with_variant(JSONB(), "postgresql")

ID_LENGTH = 64
CALL_ID_LENGTH = 255


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both dialects (SQLite stores them naive; they come back as UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert value.tzinfo is not None, "the store writes timezone-aware datetimes only"
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None or value.tzinfo is not None:
            return value
        return value.replace(tzinfo=UTC)


def _status(enum: type[StrEnum], name: str) -> Enum:
    # VARCHAR + CHECK rather than a native PostgreSQL enum: adding a status is then a plain migration.
    return Enum(
        enum,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=16,
        values_callable=lambda members: [m.value for m in members],
    )


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class ThreadRow(Base):
    __tablename__ = "threads"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    title: Mapped[str | None] = mapped_column(Text)
    # ``metadata`` is reserved on declarative classes; the column keeps the plain name.
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class MessageRow(Base):
    __tablename__ = "messages"
    __table_args__ = (Index("ix_messages_thread_id_seq", "thread_id", "seq", unique=True),)

    id: Mapped[int] = mapped_column(primary_key=True)
    thread_id: Mapped[str] = mapped_column(ForeignKey("threads.id", ondelete="CASCADE"))
    seq: Mapped[int]
    kind: Mapped[str] = mapped_column(String(16), index=True)
    # Set on tool_result messages: finds the result of a call without scanning payloads.
    tool_call_id: Mapped[str | None] = mapped_column(String(CALL_ID_LENGTH), index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    token_count: Mapped[int | None]
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class RunRow(Base):
    __tablename__ = "runs"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    thread_id: Mapped[str] = mapped_column(ForeignKey("threads.id", ondelete="CASCADE"), index=True)
    status: Mapped[RunStatus] = mapped_column(_status(RunStatus, "run_status"), index=True)
    task_type: Mapped[str | None] = mapped_column(String(128), index=True)
    config: Mapped[dict[str, Any]] = mapped_column(JSONType)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    error: Mapped[str | None] = mapped_column(Text)


class StepRow(Base):
    __tablename__ = "steps"
    __table_args__ = (Index("ix_steps_run_id_index", "run_id", "index", unique=True),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    index: Mapped[int]
    status: Mapped[StepStatus] = mapped_column(_status(StepStatus, "step_status"))
    # The assistant message while the step runs; moved into ``messages`` when the step commits.
    pending_message: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    # SET NULL: compaction may delete the committed message; the step's record stays.
    assistant_message_id: Mapped[int | None] = mapped_column(
        ForeignKey("messages.id", ondelete="SET NULL"), index=True
    )
    # Token counts and PIPO decode statistics (drafts proposed/committed, tokens per step, ...).
    usage: Mapped[dict[str, Any]] = mapped_column(JSONType)
    timings: Mapped[dict[str, Any]] = mapped_column(JSONType)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ToolInvocationRow(Base):
    __tablename__ = "tool_invocations"

    id: Mapped[int] = mapped_column(primary_key=True)
    step_id: Mapped[int] = mapped_column(ForeignKey("steps.id", ondelete="CASCADE"), index=True)
    # The idempotency key: one row per call ever made, so a resumed run never repeats a side effect.
    tool_call_id: Mapped[str] = mapped_column(String(CALL_ID_LENGTH), unique=True)
    name: Mapped[str] = mapped_column(String(255))
    arguments: Mapped[dict[str, Any]] = mapped_column(JSONType)
    status: Mapped[ToolStatus] = mapped_column(_status(ToolStatus, "tool_status"))
    # The tool_result message, once the tool has finished.
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class TaskProfileRow(Base):
    __tablename__ = "task_profiles"

    id: Mapped[int] = mapped_column(primary_key=True)
    task_type: Mapped[str] = mapped_column(String(128), unique=True)
    tau: Mapped[float] = mapped_column(Float)
    # BIGINT: draft counts grow by one per decoded token pair.
    drafts_proposed: Mapped[int] = mapped_column(BigInteger)
    drafts_committed: Mapped[int] = mapped_column(BigInteger)
    successes: Mapped[int] = mapped_column(BigInteger)
    failures: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
