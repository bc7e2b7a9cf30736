"""Database URLs and engines: which drivers the store supports and how SQLite is set up.

SQLite connections get WAL (readers never block the writer), a busy timeout, foreign keys and
``synchronous=FULL``: the pending row of a tool invocation is what stops a side effect from being
repeated, so it must be on disk before the tool runs (one fsync per commit, ~1-5 ms on an SSD).

Every SQLite transaction starts with ``BEGIN IMMEDIATE``: the store's transactions read then write
(the next ``seq``, a step's state), and a deferred transaction that upgrades to a write lock after another
writer committed fails at once with "database is locked" instead of waiting for the busy timeout.
"""

import os
from pathlib import Path
from typing import Any, Final

from sqlalchemy import URL, event, make_url
from sqlalchemy.engine import Connection
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from pipo_agent.memory.errors import UnsupportedURLError

SUPPORTED_SCHEMES: Final = ("sqlite+aiosqlite", "postgresql+asyncpg")
# Driverless names map to the async driver; ``postgres://`` is what many hosting services hand out.
_ALIASES: Final = {
    "sqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
}
SQLITE_BUSY_TIMEOUT_MS: Final = 30_000

StoreURL = str | os.PathLike[str] | URL


def parse_store_url(url: StoreURL) -> URL:
    """Normalize a URL (or a filesystem path, meaning an SQLite file) to a supported async driver."""
    if isinstance(url, os.PathLike):
        return URL.create("sqlite+aiosqlite", database=os.fspath(url))
    supported = ", ".join(f"{s}://" for s in SUPPORTED_SCHEMES)
    scheme = url.drivername if isinstance(url, URL) else url.split("://", 1)[0]
    scheme = _ALIASES.get(scheme, scheme)
    if scheme not in SUPPORTED_SCHEMES:
        raise UnsupportedURLError(
            f"unsupported database URL scheme {scheme!r} in {_safe(url)}; supported: {supported} "
            "(sqlite:// and postgresql:// map to these async drivers)"
        )
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise UnsupportedURLError(f"cannot parse database URL {_safe(url)}; supported: {supported}") from exc
    parsed = parsed.set(drivername=scheme)
    if scheme == "sqlite+aiosqlite":
        _check_sqlite_path(parsed)
    return parsed


def _safe(url: str | URL) -> str:
    try:
        return repr(make_url(url).render_as_string(hide_password=True))
    except ArgumentError:
        return "<unparsable URL>"


def _check_sqlite_path(url: URL) -> None:
    database = url.database or ""
    if database in ("", ":memory:") or url.query.get("mode") == "memory":
        # Each pooled connection (and the migration thread) would see its own empty database.
        raise UnsupportedURLError("the store needs an SQLite file, e.g. sqlite+aiosqlite:///path/memory.db")
    if database.startswith("file:"):
        return
    parent = Path(database).expanduser().resolve().parent
    if not parent.is_dir():
        raise UnsupportedURLError(f"the folder of the SQLite file {database!r} does not exist: {parent}")


def create_store_engine(url: URL, *, echo: bool = False, single_connection: bool = False) -> AsyncEngine:
    """An async engine for a URL from :func:`parse_store_url`; SQLite connections are set up as described above.

    ``single_connection`` uses no pool (for the one-shot migration engine).
    """
    kwargs: dict[str, Any] = {"echo": echo}
    if single_connection:
        kwargs["poolclass"] = NullPool
    elif url.get_backend_name() == "postgresql":
        kwargs["pool_pre_ping"] = True
    engine = create_async_engine(url, **kwargs)
    if url.get_backend_name() == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_on_connect)
        event.listen(engine.sync_engine, "begin", _sqlite_on_begin)
    return engine


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Let the begin hook emit BEGIN itself: the sqlite3 module would otherwise begin implicitly
    # (deferred, and not before DDL), which breaks both the locking above and transactional migrations.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    for pragma in (
        f"busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}",
        "journal_mode = WAL",
        "synchronous = FULL",
        "foreign_keys = ON",
    ):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def _sqlite_on_begin(connection: Connection) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")
