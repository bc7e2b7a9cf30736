"""Initial schema: threads, messages, runs, steps, tool invocations, task profiles.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.JSON:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _time(name: str, nullable: bool = False) -> "sa.Column[datetime]":
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _status(name: str, *values: str) -> sa.Enum:
    return sa.Enum(*values, name=name, native_enum=False, create_constraint=True, length=16)


def upgrade() -> None:
    op.create_table(
        "threads",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("title", sa.Text(), nullable=True),
        sa.Column("metadata", _json(), nullable=False),
        _time("created_at"),
        _time("updated_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_threads")),
    )
    op.create_index(op.f("ix_threads_updated_at"), "threads", ["updated_at"])

    op.create_table(
        "messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("thread_id", sa.String(64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("tool_call_id", sa.String(255), nullable=True),
        sa.Column("payload", _json(), nullable=False),
        sa.Column("token_count", sa.Integer(), nullable=True),
        _time("created_at"),
        sa.ForeignKeyConstraint(
            ["thread_id"], ["threads.id"], name=op.f("fk_messages_thread_id_threads"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_messages")),
    )
    op.create_index("ix_messages_thread_id_seq", "messages", ["thread_id", "seq"], unique=True)
    op.create_index(op.f("ix_messages_kind"), "messages", ["kind"])
    op.create_index(op.f("ix_messages_tool_call_id"), "messages", ["tool_call_id"])

    op.create_table(
        "runs",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("thread_id", sa.String(64), nullable=False),
        sa.Column(
            "status",
            _status("run_status", "running", "completed", "failed", "cancelled", "interrupted"),
            nullable=False,
        ),
        sa.Column("task_type", sa.String(128), nullable=True),
        sa.Column("config", _json(), nullable=False),
        _time("started_at"),
        _time("finished_at", nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["thread_id"], ["threads.id"], name=op.f("fk_runs_thread_id_threads"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runs")),
    )
    op.create_index(op.f("ix_runs_status"), "runs", ["status"])
    op.create_index(op.f("ix_runs_task_type"), "runs", ["task_type"])
    op.create_index(op.f("ix_runs_thread_id"), "runs", ["thread_id"])

    op.create_table(
        "steps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column(
            "status", _status("step_status", "running", "completed", "failed", "cancelled"), nullable=False
        ),
        sa.Column("pending_message", _json(), nullable=True),
        sa.Column("assistant_message_id", sa.Integer(), nullable=True),
        sa.Column("usage", _json(), nullable=False),
        sa.Column("timings", _json(), nullable=False),
        _time("started_at"),
        _time("finished_at", nullable=True),
        sa.ForeignKeyConstraint(
            ["assistant_message_id"],
            ["messages.id"],
            name=op.f("fk_steps_assistant_message_id_messages"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_steps_run_id_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_steps")),
    )
    op.create_index("ix_steps_run_id_index", "steps", ["run_id", "index"], unique=True)
    op.create_index(op.f("ix_steps_assistant_message_id"), "steps", ["assistant_message_id"])

    op.create_table(
        "tool_invocations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("step_id", sa.Integer(), nullable=False),
        sa.Column("tool_call_id", sa.String(255), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("arguments", _json(), nullable=False),
        sa.Column("status", _status("tool_status", "pending", "completed", "failed"), nullable=False),
        sa.Column("result", _json(), nullable=True),
        _time("started_at"),
        _time("finished_at", nullable=True),
        sa.ForeignKeyConstraint(
            ["step_id"], ["steps.id"], name=op.f("fk_tool_invocations_step_id_steps"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tool_invocations")),
        sa.UniqueConstraint("tool_call_id", name=op.f("uq_tool_invocations_tool_call_id")),
    )
    op.create_index(op.f("ix_tool_invocations_step_id"), "tool_invocations", ["step_id"])

    op.create_table(
        "task_profiles",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("task_type", sa.String(128), nullable=False),
        sa.Column("tau", sa.Float(), nullable=False),
        sa.Column("drafts_proposed", sa.BigInteger(), nullable=False),
        sa.Column("drafts_committed", sa.BigInteger(), nullable=False),
        sa.Column("successes", sa.BigInteger(), nullable=False),
        sa.Column("failures", sa.BigInteger(), nullable=False),
        _time("updated_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task_profiles")),
        sa.UniqueConstraint("task_type", name=op.f("uq_task_profiles_task_type")),
    )


def downgrade() -> None:
    for table in ("task_profiles", "tool_invocations", "steps", "runs", "messages", "threads"):
        op.drop_table(table)
