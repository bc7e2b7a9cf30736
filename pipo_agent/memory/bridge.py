"""Use the store from any anyio backend, trio included, through an asyncio loop in a thread of its own.

SQLAlchemy's async layer and both drivers (aiosqlite, asyncpg) run on asyncio only. On asyncio, use
:class:`~pipo_agent.memory.MemoryStore` directly; on trio, use this::

    async with await ThreadedMemoryStore.open(url) as memory:
        thread = await memory.call(lambda store: store.create_thread(title="t"))

Each ``call`` waits in a worker thread for the operation, which runs on the store's loop. A cancelled
caller still waits for it to finish: every operation is one short transaction, and leaving it
half-observed would make the caller unsure whether it was committed.
"""

import asyncio
import contextvars
import threading
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Self, TypeVar

import anyio.to_thread

from pipo_agent.memory.engine import StoreURL
from pipo_agent.memory.store import MemoryStore

T = TypeVar("T")


class ThreadedMemoryStore:
    def __init__(self, loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
        self._loop = loop
        self._thread = thread
        self._store: MemoryStore | None = None

    @classmethod
    async def open(cls, url: StoreURL, *, migrate: bool = True) -> "ThreadedMemoryStore":
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="pipo-memory-store", daemon=True)
        thread.start()
        bridge = cls(loop, thread)
        try:
            bridge._store = await bridge._submit(lambda: MemoryStore.open(url, migrate=migrate))
        except BaseException:
            await bridge._stop()
            raise
        return bridge

    async def call(self, operation: Callable[[MemoryStore], Awaitable[T]]) -> T:
        """Run ``operation(store)`` on the store's loop and return its result (or raise its error)."""
        store = self._store
        if store is None:
            raise RuntimeError("the threaded store is closed")
        return await self._submit(lambda: operation(store))

    async def _submit(self, make: Callable[[], Awaitable[T]]) -> T:
        async def run() -> T:
            return await make()

        # An empty context: the caller's would carry trio's marker (sniffio) into the asyncio task.
        future = contextvars.Context().run(asyncio.run_coroutine_threadsafe, run(), self._loop)
        return await anyio.to_thread.run_sync(future.result)

    async def aclose(self) -> None:
        store, self._store = self._store, None
        try:
            if store is not None:
                await self._submit(store.close)
        finally:
            await self._stop()

    async def _stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        await anyio.to_thread.run_sync(self._thread.join)
        self._loop.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
