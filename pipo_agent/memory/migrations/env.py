"""Alembic environment of the memory schema (see :mod:`pipo_agent.memory.migrate`).

Online, it uses the connection handed in through ``config.attributes["connection"]``, or else opens an
async engine of its own on ``config.attributes["url"]`` and drives it with ``asyncio.run`` (the thread
running this has no event loop). Offline (``--sql``) it renders the SQL for that URL's dialect.
"""

import asyncio

from alembic import context
from sqlalchemy import URL, text
from sqlalchemy.engine import Connection

from pipo_agent.memory.engine import create_store_engine
from pipo_agent.memory.models import Base

# Serializes concurrent upgrades of one PostgreSQL database (SQLite's BEGIN IMMEDIATE does it there).
PG_ADVISORY_LOCK_KEY = 0x7069706F6D656D  # "pipomem"

config = context.config


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        # SQLite DDL is transactional once the engine issues BEGIN itself (see engine.py).
        transactional_ddl=True,
        compare_type=True,
    )


def run_on(connection: Connection) -> None:
    _configure(connection)
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_ADVISORY_LOCK_KEY})
        context.run_migrations()


async def run_with_own_engine(url: URL) -> None:
    engine = create_store_engine(url, single_connection=True)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(run_on)
    finally:
        await engine.dispose()


def run_offline(url: URL) -> None:
    context.configure(url=url, target_metadata=Base.metadata, literal_binds=True, transactional_ddl=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline(config.attributes["url"])
elif (shared := config.attributes.get("connection")) is not None:
    run_on(shared)
else:
    asyncio.run(run_with_own_engine(config.attributes["url"]))
