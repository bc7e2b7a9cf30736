"""Conversation memory and durable agent runs in SQL: SQLite by default, PostgreSQL for shared deployments.

- :class:`MemoryStore`: threads and their message history, runs, steps and tool invocations, task
  profiles. ``await MemoryStore.open("sqlite+aiosqlite:///memory.db")`` creates or upgrades the schema
  with the shipped Alembic migrations; ``postgresql+asyncpg://...`` works the same.
- Messages are plain JSON dicts with a ``kind`` (``system``, ``user``, ``assistant``, ``tool_result``);
  the agent's typed messages serialize to them. See :mod:`~pipo_agent.memory.payload`.
- Durability: a tool call is recorded ``pending`` before it runs and finished after, keyed by its
  ``tool_call_id``; a step commits its assistant message and results in one transaction; after a crash
  :meth:`MemoryStore.resume_point` says what to reuse and what is left (see :mod:`~pipo_agent.memory.store`).
- :meth:`MemoryStore.compact_history` summarizes old messages without splitting a tool call from its results.
- :meth:`MemoryStore.export_langchain` / :func:`to_langchain_dicts`: LangChain's chat-history dicts,
  without importing LangChain.

**asyncio only.** SQLAlchemy's async layer and both drivers (aiosqlite, asyncpg) run on asyncio. From trio
(or any anyio backend) use :class:`ThreadedMemoryStore`, which runs the store on an asyncio loop in a
thread of its own.

The storage boundary: this package owns its tables (``threads``, ``messages``, ``runs``, ``steps``,
``tool_invocations``, ``task_profiles``, and Alembic's ``alembic_version``) and nothing else in the
database; other stores plug in at the level of message dicts, not of these tables.
"""

from pipo_agent.memory.bridge import ThreadedMemoryStore
from pipo_agent.memory.compaction import CompactionPlan, plan_compaction, safe_cuts
from pipo_agent.memory.engine import SUPPORTED_SCHEMES, create_store_engine, parse_store_url
from pipo_agent.memory.errors import (
    InvalidMessageError,
    MemoryStoreError,
    MigrationError,
    NotFoundError,
    StorageError,
    StoreMisuseError,
    StoreStateError,
    UnsupportedURLError,
)
from pipo_agent.memory.langchain_format import to_langchain_dict, to_langchain_dicts
from pipo_agent.memory.payload import MESSAGE_KINDS, MessageKind
from pipo_agent.memory.records import (
    CompactionResult,
    Message,
    ResumePoint,
    Run,
    RunStatus,
    Step,
    StepStatus,
    StoredMessage,
    TaskProfile,
    Thread,
    ToolInvocation,
    ToolStatus,
)
from pipo_agent.memory.store import CountTokens, MemoryStore, Summarize

__all__ = [
    "MESSAGE_KINDS",
    "SUPPORTED_SCHEMES",
    "CompactionPlan",
    "CompactionResult",
    "CountTokens",
    "InvalidMessageError",
    "MemoryStore",
    "MemoryStoreError",
    "Message",
    "MessageKind",
    "MigrationError",
    "NotFoundError",
    "ResumePoint",
    "Run",
    "RunStatus",
    "Step",
    "StepStatus",
    "StorageError",
    "StoreMisuseError",
    "StoreStateError",
    "StoredMessage",
    "Summarize",
    "TaskProfile",
    "Thread",
    "ThreadedMemoryStore",
    "ToolInvocation",
    "ToolStatus",
    "UnsupportedURLError",
    "create_store_engine",
    "parse_store_url",
    "plan_compaction",
    "safe_cuts",
    "to_langchain_dict",
    "to_langchain_dicts",
]
