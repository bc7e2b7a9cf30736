"""Store fixtures: every store test runs on a real SQLite file and on a real PostgreSQL database.

PostgreSQL comes from ``PIPO_TEST_POSTGRES_URL`` (``.ci/run`` starts a server and sets it; its user must be
allowed to create roles). Each test gets a fresh schema on that server, owned by a role of its own whose
``search_path`` is that schema alone, both dropped afterwards. Without the variable the PostgreSQL cases
skip with the reason.

The store is asyncio-only (SQLAlchemy's async layer and its drivers), so its tests run on asyncio; the trio
path is :class:`~pipo_agent.memory.ThreadedMemoryStore`, tested on both backends.
"""

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from sqlalchemy import URL, make_url, text
from sqlalchemy.ext.asyncio import create_async_engine

from pipo_agent.memory import MemoryStore

POSTGRES_ENV = "PIPO_TEST_POSTGRES_URL"
NO_POSTGRES = f"PostgreSQL tests need {POSTGRES_ENV}=postgresql+asyncpg://user@host:port/db (.ci/run sets it)"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def postgres_url() -> URL | None:
    value = os.environ.get(POSTGRES_ENV)
    return make_url(value) if value else None


async def _admin(server: URL, *statements: str) -> None:
    engine = create_async_engine(server, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            for statement in statements:
                await connection.execute(text(statement))
    finally:
        await engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path, anyio_backend: str) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'memory.db'}"
        return
    server = postgres_url()
    if server is None:
        pytest.skip(NO_POSTGRES)
    # A role whose only schema is its own: a fresh, empty namespace in milliseconds (a database takes ~0.3 s).
    name, password = f"pipo_test_{uuid4().hex[:16]}", uuid4().hex
    await _admin(
        server,
        f"CREATE ROLE \"{name}\" LOGIN PASSWORD '{password}'",
        f'CREATE SCHEMA "{name}" AUTHORIZATION "{name}"',
        f'ALTER ROLE "{name}" SET search_path = "{name}"',
    )
    yield server.set(username=name, password=password).render_as_string(hide_password=False)
    await _admin(server, f'DROP SCHEMA "{name}" CASCADE', f'DROP ROLE "{name}"')


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[MemoryStore]:
    async with MemoryStore.open(db_url) as opened:
        yield opened


def assistant(
    content: str = "", *calls: tuple[str, str, dict[str, Any]], reasoning: str = ""
) -> dict[str, Any]:
    """An assistant message dict; ``calls`` are ``(id, name, arguments)``."""
    message: dict[str, Any] = {"kind": "assistant", "content": content, "reasoning": reasoning}
    if calls:
        message["tool_calls"] = [{"id": i, "name": n, "arguments": a} for i, n, a in calls]
    return message


def result(call_id: str, content: object, name: str = "calc", is_error: bool = False) -> dict[str, Any]:
    return {
        "kind": "tool_result",
        "tool_call_id": call_id,
        "name": name,
        "content": content,
        "is_error": is_error,
    }


def user(content: str) -> dict[str, Any]:
    return {"kind": "user", "content": content}


def system(content: str) -> dict[str, Any]:
    return {"kind": "system", "content": content}
