"""A private event loop in a daemon thread that owns a loop-bound resource, and the bridges to it.

The embedded engine is bound to the event loop it was started on (its task group and memory streams cannot
be used from another loop), and so is a SQL store. LangChain calls a model from anywhere: sync code, a
running loop's worker thread, a fresh asyncio loop per test, trio. :class:`LoopThread` enters its resource
once, on an asyncio loop of its own, and runs all work on it:

- from sync code, :meth:`LoopThread.call` / :meth:`LoopThread.iterate` block the calling thread (never an
  event loop: they do not start or nest one, so they also work inside a running loop's worker thread);
- from async code on any loop and any anyio backend, :meth:`LoopThread.acall` / :meth:`LoopThread.aiterate`
  wait in a worker thread, so the caller's loop keeps running.

Items cross threads through an unbounded buffer (a turn's output is bounded by ``max_tokens``). Leaving an
iteration early, or cancelling the caller, cancels the work on the loop thread, which closes the backend's
stream (the engine aborts the request and frees its KV blocks). The thread is a daemon, so an open host
never blocks interpreter exit; :meth:`LoopThread.close` exits the resource properly, and a later call
starts it again.
"""

import contextlib
import logging
import threading
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import CancelledError, Future
from contextlib import AbstractAsyncContextManager
from functools import partial
from typing import Any, Final, Generic, TypeVar

import anyio
from anyio.abc import TaskStatus
from anyio.from_thread import BlockingPortal

from pipo_agent.errors import BackendError
from pipo_agent.langchain.errors import LoopThreadError

__all__ = ["LoopThread"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

_START_TIMEOUT_S: Final = 60.0  # starting the loop thread (not the resource: loading a model may take longer)
_CLOSE_TIMEOUT_S: Final = 30.0  # joining the thread after its loop was stopped
_CLEANUP_TIMEOUT_S: Final = 10.0  # closing a backend stream whose consumer left


class _Buffer(Generic[R]):
    """A thread-safe queue of items with an end (and maybe an error), for one producer and one consumer."""

    def __init__(self) -> None:
        self._items: deque[R] = deque()
        self._cond = threading.Condition()
        self._done = False
        self._error: BaseException | None = None

    def put(self, item: R) -> None:
        with self._cond:
            self._items.append(item)
            self._cond.notify()

    def finish(self, error: BaseException | None = None) -> None:
        with self._cond:
            if not self._done:
                self._done, self._error = True, error
            self._cond.notify_all()

    def take(self) -> list[R] | None:
        """All items that arrived (blocking until there is one), or ``None`` at the end; raises the
        producer's error once its items are taken."""
        with self._cond:
            self._cond.wait_for(lambda: bool(self._items) or self._done)
            if self._items:
                items = list(self._items)
                self._items.clear()
                return items
            if self._error is not None:
                raise self._error
            return None


async def _pump(make: Callable[[T], AsyncIterator[R]], resource: T, *, buffer: _Buffer[R]) -> None:
    """Runs on the loop thread: move the items of ``make(resource)`` into ``buffer``."""
    try:
        iterator = make(resource)
        try:
            async for item in iterator:
                buffer.put(item)
        finally:
            aclose = getattr(iterator, "aclose", None)
            if aclose is not None:
                with anyio.CancelScope(shield=True), anyio.move_on_after(_CLEANUP_TIMEOUT_S):
                    await aclose()
    except anyio.get_cancelled_exc_class():
        buffer.finish(BackendError("the work was cancelled on the private loop thread (closed?)"))
        raise
    except BaseException as exc:  # delivered to the consumer, in its thread
        buffer.finish(exc)
        if not isinstance(exc, Exception):
            raise
    else:
        buffer.finish()


def _start_loop(name: str) -> tuple[BlockingPortal, threading.Thread]:
    ready: Future[BlockingPortal] = Future()

    async def main() -> None:
        async with BlockingPortal() as portal:
            ready.set_result(portal)
            await portal.sleep_until_stopped()

    def run() -> None:
        try:
            anyio.run(main)
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc)
            else:
                logger.exception("the private event loop %s failed", name)

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return ready.result(timeout=_START_TIMEOUT_S), thread


class LoopThread(Generic[T]):
    """A resource (``enter()``, an async context manager) kept open on a private event-loop thread.

    Both the thread and the resource start on first use. The resource is entered and exited in one task of
    its own, so resources holding task groups (the engine) are used correctly.
    """

    def __init__(self, enter: Callable[[], AbstractAsyncContextManager[T]], *, name: str) -> None:
        self._enter = enter
        self._name = name
        self._lock = threading.Lock()
        self._portal: BlockingPortal | None = None
        self._thread: threading.Thread | None = None
        self._keeper: Future[None] | None = None
        self._resource: T | None = None
        self._stop: anyio.Event | None = None  # created on the loop thread; set to exit the resource
        self._running: set[Future[Any]] = set()
        self._active = 0  # tasks running fn(resource) on the loop thread

    @property
    def started(self) -> bool:
        return self._keeper is not None and not self._keeper.done()

    # ---- from sync code ----

    def call(self, fn: Callable[[T], Awaitable[R]]) -> R:
        """``await fn(resource)`` on the loop thread, blocking this thread for the result."""
        future = self._spawn(fn)
        try:
            return future.result()
        except CancelledError:
            raise BackendError("the work was cancelled on the private loop thread (closed?)") from None

    def iterate(self, make: Callable[[T], AsyncIterator[R]]) -> Iterator[R]:
        """The items of ``make(resource)``, iterated on the loop thread; leaving early cancels it there."""
        buffer, future = self._submit(make)
        try:
            while (items := buffer.take()) is not None:
                yield from items
        finally:
            future.cancel()

    # ---- from async code, on any event loop ----

    async def acall(self, fn: Callable[[T], Awaitable[R]]) -> R:
        """``await fn(resource)`` on the loop thread; cancelling the caller cancels it there."""

        future = await anyio.to_thread.run_sync(self._spawn, fn)
        try:
            return await anyio.to_thread.run_sync(future.result, abandon_on_cancel=True)
        except CancelledError:
            raise BackendError("the work was cancelled on the private loop thread (closed?)") from None
        finally:
            future.cancel()

    async def aiterate(self, make: Callable[[T], AsyncIterator[R]]) -> AsyncIterator[R]:
        """:meth:`iterate` for async callers."""
        buffer, future = await anyio.to_thread.run_sync(self._submit, make)
        try:
            while (items := await anyio.to_thread.run_sync(buffer.take, abandon_on_cancel=True)) is not None:
                for item in items:
                    yield item
        finally:
            future.cancel()

    # ---- lifecycle ----

    def close(self) -> None:
        """Cancel running work, exit the resource and stop the thread; a later call starts them again."""
        self._check_thread()
        with self._lock:
            portal, thread, keeper, stop = self._portal, self._thread, self._keeper, self._stop
            self._portal = self._thread = self._keeper = self._resource = self._stop = None
            running, self._running = self._running, set()
        if portal is None or thread is None:
            return
        for future in list(running):  # cancel the work in flight; let it unwind before the resource goes
            future.cancel()
        try:
            portal.call(self._unwound)
            if keeper is not None and stop is not None and not keeper.done():
                portal.call(stop.set)  # the resource exits normally (not cancelled), so it can clean up
                keeper.result(timeout=_CLOSE_TIMEOUT_S)
        except Exception:  # the resource failed to close; the loop still stops
            logger.exception("closing the resource of %s failed", self._name)
        with contextlib.suppress(RuntimeError):  # raised when the loop has already stopped
            portal.call(portal.stop, True)
        thread.join(_CLOSE_TIMEOUT_S)
        if thread.is_alive():
            logger.warning("the private event loop %s did not stop within %ss", self._name, _CLOSE_TIMEOUT_S)

    async def aclose(self) -> None:
        await anyio.to_thread.run_sync(self.close)

    def _check_thread(self) -> None:
        if self._thread is not None and threading.current_thread() is self._thread:
            raise LoopThreadError(
                f"a blocking call to {self._name} came from its own event loop, which would wait for itself; "
                "use the async API there"
            )

    def _start(self) -> tuple[BlockingPortal, T]:
        """The running loop and resource, started once (blocking: entering the resource may load a model)."""
        self._check_thread()
        with self._lock:
            if self._portal is None:
                self._portal, self._thread = _start_loop(self._name)
            if self._keeper is None or self._keeper.done():
                if self._keeper is not None:
                    logger.warning("the resource of %s ended; starting it again", self._name)
                self._keeper, self._resource = self._portal.start_task(self._keep)
            return self._portal, self._resource  # type: ignore[return-value]  # set just above

    def _submit(self, make: Callable[[T], AsyncIterator[R]]) -> tuple[_Buffer[R], Future[None]]:
        buffer: _Buffer[R] = _Buffer()
        return buffer, self._spawn(partial(_pump, make, buffer=buffer))

    def _spawn(self, fn: Callable[[T], Awaitable[R]]) -> Future[R]:
        """Start ``fn(resource)`` on the loop thread; its future is tracked until it is done."""
        portal, resource = self._start()
        future = portal.start_task_soon(self._counted, fn, resource)
        with self._lock:
            self._running.add(future)
        future.add_done_callback(self._running.discard)
        return future

    async def _counted(self, fn: Callable[[T], Awaitable[R]], resource: T) -> R:
        self._active += 1  # on the loop thread only
        try:
            return await fn(resource)
        finally:
            self._active -= 1

    async def _unwound(self) -> None:
        """Wait (bounded) until cancelled work has finished unwinding, e.g. closing its backend stream."""
        with anyio.move_on_after(_CLOSE_TIMEOUT_S):
            while self._active:
                await anyio.sleep(0.005)

    async def _keep(self, *, task_status: TaskStatus[T]) -> None:
        stop = self._stop = anyio.Event()
        async with self._enter() as resource:
            task_status.started(resource)
            await stop.wait()  # set by close()
