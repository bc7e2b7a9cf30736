"""Run the schema's Alembic migrations programmatically; no ``alembic.ini`` is needed.

The store calls :func:`upgrade` on open, so existing databases are brought to the newest revision.
Alembic's commands are synchronous: :func:`upgrade` runs one in a worker thread, where the environment
(``migrations/env.py``) drives an async engine of its own on a fresh event loop, Alembic's async pattern.
:func:`upgrade_connection` instead runs it on a connection the caller already holds (for
:meth:`MemoryStore.from_engine <pipo_agent.memory.MemoryStore.from_engine>`).

A new revision is written with Alembic's API against a database at the current head::

    from alembic import command
    from pipo_agent.memory.migrate import alembic_config
    command.revision(alembic_config("sqlite+aiosqlite:///dev.db"), "add x", autogenerate=True)
"""

from typing import Final

import anyio.to_thread
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import URL
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection

from pipo_agent.memory.engine import StoreURL, parse_store_url
from pipo_agent.memory.errors import MigrationError

SCRIPT_LOCATION: Final = "pipo_agent.memory:migrations"


def alembic_config(url: StoreURL | None = None, connection: Connection | None = None) -> Config:
    """An Alembic config for the shipped migrations, bound to a URL or an open connection."""
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    # Passed as attributes, not options: config options go through configparser, which mangles '%'.
    if url is not None:
        config.attributes["url"] = parse_store_url(url)
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "the shipped migrations have a head"
    return head


async def upgrade(url: URL) -> None:
    """``alembic upgrade head`` on a URL, in a worker thread.

    A database stamped with a revision this code does not know (made by a newer release) fails with
    :class:`MigrationError` rather than being touched.
    """
    try:
        await anyio.to_thread.run_sync(command.upgrade, alembic_config(url), "head")
    except (SQLAlchemyError, OSError, CommandError) as exc:
        raise MigrationError(f"migrating the memory schema failed: {exc}") from exc


async def upgrade_connection(connection: AsyncConnection) -> None:
    """``alembic upgrade head`` on an open connection (committed when done)."""

    def run(sync_connection: Connection) -> None:
        command.upgrade(alembic_config(connection=sync_connection), "head")

    try:
        await connection.run_sync(run)
        await connection.commit()
    except (SQLAlchemyError, OSError, CommandError) as exc:
        raise MigrationError(f"migrating the memory schema failed: {exc}") from exc


async def current_revision(connection: AsyncConnection) -> str | None:
    def read(sync_connection: Connection) -> str | None:
        return MigrationContext.configure(sync_connection).get_current_revision()

    return await connection.run_sync(read)
