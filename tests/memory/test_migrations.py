"""The Alembic migrations build exactly the ORM's schema, upgrade existing databases, and refuse strangers."""

import sqlite3
from pathlib import Path

import anyio.to_thread
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column, Integer, MetaData, text
from sqlalchemy.engine import Connection

from pipo_agent.memory import (
    MemoryStore,
    MigrationError,
    StoreStateError,
    create_store_engine,
    parse_store_url,
)
from pipo_agent.memory.migrate import alembic_config, head_revision
from pipo_agent.memory.models import Base

pytestmark = pytest.mark.anyio


def schema_diff(connection: Connection, metadata: MetaData) -> list[object]:
    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "compare_server_default": True}
    )
    return list(compare_metadata(context, metadata))


async def diff_against(url: str, metadata: MetaData) -> list[object]:
    engine = create_store_engine(parse_store_url(url))
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(schema_diff, metadata)
    finally:
        await engine.dispose()


async def test_migrated_schema_equals_the_orm_metadata(db_url: str) -> None:
    async with MemoryStore.open(db_url):
        pass
    assert await diff_against(db_url, Base.metadata) == []
    # The comparison is not vacuous: a column the migrations lack shows up.
    extended = MetaData(naming_convention=Base.metadata.naming_convention)
    for table in Base.metadata.tables.values():
        table.to_metadata(extended)
    extended.tables["threads"].append_column(Column("extra", Integer))
    diff = await diff_against(db_url, extended)
    assert [d[0] for d in diff] == ["add_column"]  # type: ignore[index]


async def test_reopening_is_idempotent_and_keeps_data(db_url: str) -> None:
    async with MemoryStore.open(db_url) as store:
        thread = await store.create_thread(title="kept")
    async with MemoryStore.open(db_url) as store:
        assert (await store.get_thread(thread.id)).title == "kept"
    store = await MemoryStore.open(db_url, migrate=False)
    try:
        assert (await store.get_thread(thread.id)).title == "kept"
    finally:
        await store.close()


async def test_an_older_database_is_upgraded_on_open(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
    # A database made by an earlier release: an empty one at "base", with a stranger table of its own.
    with sqlite3.connect(tmp_path / "old.db") as connection:
        connection.execute("CREATE TABLE not_ours (x INTEGER)")
    async with MemoryStore.open(url) as store:
        assert await store.list_threads() == []
        async with store.engine.connect() as connection:
            version = (await connection.execute(text("SELECT version_num FROM alembic_version"))).scalar_one()
    assert version == head_revision()


async def test_unmigrated_database_is_refused_without_migrate(tmp_path: Path) -> None:
    with pytest.raises(StoreStateError, match="migrate=True"):
        await MemoryStore.open(tmp_path / "empty.db", migrate=False)


async def test_a_database_from_a_newer_release_is_refused(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'newer.db'}"
    async with MemoryStore.open(url):
        pass
    with sqlite3.connect(tmp_path / "newer.db") as connection:
        connection.execute("UPDATE alembic_version SET version_num = 'ffff_from_the_future'")
    with pytest.raises(MigrationError, match="ffff_from_the_future"):
        await MemoryStore.open(url)


async def test_downgrade_to_base_and_up_again(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'roundtrip.db'}"
    async with MemoryStore.open(url):
        pass

    await anyio.to_thread.run_sync(command.downgrade, alembic_config(url), "base")
    with sqlite3.connect(tmp_path / "roundtrip.db") as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == {"alembic_version"}
    async with MemoryStore.open(url) as store:
        assert await store.list_threads() == []


async def test_store_on_a_caller_owned_engine(tmp_path: Path) -> None:
    engine = create_store_engine(parse_store_url(tmp_path / "owned.db"))
    try:
        store = await MemoryStore.from_engine(engine)
        thread = await store.create_thread()
        await store.close()  # leaves the engine open
        again = await MemoryStore.from_engine(engine, migrate=False)
        assert (await again.get_thread(thread.id)).id == thread.id
    finally:
        await engine.dispose()
    assert await diff_against(f"sqlite+aiosqlite:///{tmp_path / 'owned.db'}", Base.metadata) == []
