"""Agent-loop fixtures: every async test runs on asyncio and on trio; memory tests on a real SQLite file and
on a real PostgreSQL (``PIPO_TEST_POSTGRES_URL``, set by ``.ci/run``; those cases skip without it).

The store runs on asyncio only, so :func:`open_memory` gives a plain ``MemoryStore`` on asyncio and a
``ThreadedMemoryStore`` on trio, as an application would.
"""

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
import sniffio
from sqlalchemy import URL, make_url, text
from sqlalchemy.ext.asyncio import create_async_engine

from pipo_agent.memory import MemoryStore, ThreadedMemoryStore

POSTGRES_ENV = "PIPO_TEST_POSTGRES_URL"
NO_POSTGRES = f"PostgreSQL tests need {POSTGRES_ENV}=postgresql+asyncpg://user@host:port/db (.ci/run sets it)"


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    backend: str = request.param
    return backend


def call(name: str, **arguments: Any) -> str:
    """One tool-call block as the model writes it."""
    return f"<tool_call>\n{json.dumps({'name': name, 'arguments': arguments})}\n</tool_call>"


def turn(reasoning: str, content: str = "", *calls: str) -> str:
    """A raw turn in the PIPO format (generation starts inside the think block)."""
    return f"{reasoning}\n</think>\n{content}" + "".join(calls)


@asynccontextmanager
async def open_memory(url: str | Path) -> AsyncIterator[MemoryStore | ThreadedMemoryStore]:
    if sniffio.current_async_library() == "asyncio":
        async with MemoryStore.open(url) as store:
            yield store
    else:
        async with await ThreadedMemoryStore.open(url) as threaded:
            yield threaded


async def on_store(memory: MemoryStore | ThreadedMemoryStore, operation: Any) -> Any:
    """Run ``operation(store)`` on either kind of store."""
    if isinstance(memory, ThreadedMemoryStore):
        return await memory.call(operation)
    return await operation(memory)


async def _admin(server: URL, *statements: str) -> None:
    engine = create_async_engine(server, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            for statement in statements:
                await connection.execute(text(statement))
    finally:
        await engine.dispose()


def _postgres() -> URL | None:
    value = os.environ.get(POSTGRES_ENV)
    return make_url(value) if value else None


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """A fresh database: an SQLite file, or a PostgreSQL schema of its own (a role whose only schema it is)."""
    if request.param == "sqlite":
        yield tmp_path / "memory.db"
        return
    server = _postgres()
    if server is None:
        pytest.skip(NO_POSTGRES)
    import anyio

    name, password = f"pipo_agent_{uuid4().hex[:16]}", uuid4().hex
    anyio.run(
        _admin,
        server,
        f"CREATE ROLE \"{name}\" LOGIN PASSWORD '{password}'",
        f'CREATE SCHEMA "{name}" AUTHORIZATION "{name}"',
        f'ALTER ROLE "{name}" SET search_path = "{name}"',
    )
    yield server.set(username=name, password=password).render_as_string(hide_password=False)
    anyio.run(_admin, server, f'DROP SCHEMA "{name}" CASCADE', f'DROP ROLE "{name}"')
