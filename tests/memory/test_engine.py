"""URLs, SQLite connection settings, error mapping, and the package's import footprint."""

import re
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from sqlalchemy import text

from pipo_agent.memory import (
    SUPPORTED_SCHEMES,
    MemoryStore,
    MigrationError,
    StorageError,
    UnsupportedURLError,
    parse_store_url,
)

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("given", "driver"),
    [
        ("sqlite:///{dir}/a.db", "sqlite+aiosqlite"),
        ("sqlite+aiosqlite:///{dir}/a.db", "sqlite+aiosqlite"),
        ("postgresql://u:p@h:5/db", "postgresql+asyncpg"),
        ("postgres://u@h/db", "postgresql+asyncpg"),
        ("postgresql+asyncpg://u@h/db", "postgresql+asyncpg"),
    ],
)
def test_urls_map_to_the_async_drivers(given: str, driver: str, tmp_path: Path) -> None:
    assert parse_store_url(given.format(dir=tmp_path)).drivername == driver


def test_a_path_means_an_sqlite_file(tmp_path: Path) -> None:
    url = parse_store_url(tmp_path / "m.db")
    assert (url.drivername, url.database) == ("sqlite+aiosqlite", str(tmp_path / "m.db"))


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("mysql+aiomysql://u@h/db", "unsupported database URL scheme 'mysql+aiomysql'"),
        ("postgresql+psycopg2://u:secret@h/db", "supported: sqlite+aiosqlite://, postgresql+asyncpg://"),
        ("not a url", "unsupported"),
        ("sqlite+aiosqlite://", "needs an SQLite file"),
        ("sqlite+aiosqlite:///:memory:", "needs an SQLite file"),
        ("sqlite+aiosqlite:////no/such/folder/m.db", "does not exist"),
    ],
)
def test_bad_urls_name_the_supported_schemes(given: str, message: str) -> None:
    with pytest.raises(UnsupportedURLError, match=re.escape(message)) as caught:
        parse_store_url(given)
    assert "secret" not in str(caught.value)
    assert SUPPORTED_SCHEMES == ("sqlite+aiosqlite", "postgresql+asyncpg")


async def test_sqlite_connections_use_wal_busy_timeout_and_foreign_keys(tmp_path: Path) -> None:
    async with MemoryStore.open(tmp_path / "m.db") as store, store.engine.connect() as connection:
        pragma = {
            name: (await connection.execute(text(f"PRAGMA {name}"))).scalar_one()
            for name in ("journal_mode", "foreign_keys", "busy_timeout", "synchronous")
        }
    assert pragma == {"journal_mode": "wal", "foreign_keys": 1, "busy_timeout": 30_000, "synchronous": 2}


async def test_two_stores_on_one_sqlite_file_take_turns(tmp_path: Path) -> None:
    async with MemoryStore.open(tmp_path / "m.db") as first, MemoryStore.open(tmp_path / "m.db") as second:
        thread = await first.create_thread()

        async def writer(store: MemoryStore, tag: str) -> None:
            for i in range(10):
                await store.append_message(thread.id, {"kind": "user", "content": f"{tag}{i}"})

        async with anyio.create_task_group() as tg:
            tg.start_soon(writer, first, "a")
            tg.start_soon(writer, second, "b")
        assert [m.seq for m in await second.load_messages(thread.id)] == list(range(1, 21))


async def test_unreachable_database_is_a_storage_error() -> None:
    # Port 9 (discard) on loopback: nothing listens there.
    with pytest.raises(MigrationError):
        await MemoryStore.open("postgresql+asyncpg://nobody@127.0.0.1:9/none")
    with pytest.raises(StorageError):
        await MemoryStore.open("postgresql+asyncpg://nobody@127.0.0.1:9/none", migrate=False)


def test_the_memory_package_does_not_import_torch() -> None:
    code = "import sys, pipo_agent.memory; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_public_names_resolve() -> None:
    import pipo_agent.memory as memory

    assert sorted(memory.__all__) == sorted(set(memory.__all__))
    for name in memory.__all__:
        assert getattr(memory, name) is not None, name
