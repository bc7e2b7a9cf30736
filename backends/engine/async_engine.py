"""The engine behind an anyio API: many coroutines submit and stream at once; torch never runs on the loop.

One background task owns the `LLMEngine`. Between steps it takes in new requests and cancellations, then runs
`engine.step()` in a worker thread (`anyio.to_thread.run_sync`) and hands each output to its request's memory
stream. Only that task touches the engine, so no lock is needed; a request's errors (bad parameters, a prompt
over the context) are raised to the caller by `make_request` before anything is queued. Leaving `stream()`
early (a `break`, a cancel scope, a client disconnect) aborts the request and frees its KV blocks before the next
step. Works on asyncio and trio.

    async with AsyncEngine(engine) as aengine:
        async for out in aengine.stream(prompt_ids, SamplingParams(max_new_tokens=64)):
            print(out.text_delta, end="")
"""

import math
from collections.abc import AsyncIterator, Sequence
from types import TracebackType

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from pipo_agent.backends.decode.sampling import SamplingParams
from pipo_agent.backends.decode.types import DecodeResult
from pipo_agent.backends.engine.errors import EngineError
from pipo_agent.backends.engine.llm_engine import LLMEngine, RequestOutput
from pipo_agent.backends.engine.request import EngineRequest


class EngineClosedError(EngineError, RuntimeError):
    """The async engine is not running (used outside `async with`, or its loop failed)."""


class AsyncEngine:
    def __init__(self, engine: LLMEngine) -> None:
        self.engine = engine
        self._pending: list[tuple[EngineRequest, MemoryObjectSendStream[RequestOutput]]] = []
        self._aborts: list[int] = []
        self._streams: dict[int, MemoryObjectSendStream[RequestOutput]] = {}
        self._wake = anyio.Event()
        self._task_group: TaskGroup | None = None
        self._failure: BaseException | None = None

    async def __aenter__(self) -> "AsyncEngine":
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        self._task_group.start_soon(self._run)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._task_group is not None
        self._task_group.cancel_scope.cancel()
        try:
            return await self._task_group.__aexit__(exc_type, exc, tb)
        finally:
            self._task_group = None
            for send in self._streams.values():
                send.close()
            self._streams.clear()

    def stream(self, prompt_ids: Sequence[int], params: SamplingParams) -> AsyncIterator[RequestOutput]:
        """Outputs of one request, step by step, ending with the finished one. Raises request errors at once."""
        if self._task_group is None:
            raise EngineClosedError("AsyncEngine is not running; use it inside `async with`")
        if self._failure is not None:
            raise EngineClosedError(f"the engine loop failed: {self._failure!r}") from self._failure
        req = self.engine.make_request(prompt_ids, params)
        send, receive = anyio.create_memory_object_stream[RequestOutput](math.inf)
        self._pending.append((req, send))
        self._wake.set()
        return self._iterate(req.request_id, receive)

    async def _iterate(
        self, request_id: int, receive: MemoryObjectReceiveStream[RequestOutput]
    ) -> AsyncIterator[RequestOutput]:
        finished = False
        try:
            async with receive:
                async for output in receive:
                    yield output
                    if output.finished:
                        finished = True
                        return
            if not finished and self._failure is not None:
                raise EngineClosedError(f"the engine loop failed: {self._failure!r}") from self._failure
        finally:
            if not finished:
                self._aborts.append(request_id)
                self._wake.set()

    async def generate(self, prompt_ids: Sequence[int], params: SamplingParams) -> DecodeResult:
        result = None
        async for output in self.stream(prompt_ids, params):
            result = output.result
        if result is None:
            raise EngineClosedError("the request ended without a result")
        return result

    async def _run(self) -> None:
        engine = self.engine
        try:
            while True:
                self._take_new_work()
                if not engine.has_unfinished():
                    await self._wake.wait()
                    self._wake = anyio.Event()
                    continue
                outputs = await anyio.to_thread.run_sync(engine.step)
                for output in outputs:
                    send = self._streams.get(output.request_id)
                    if send is None:
                        continue
                    try:
                        send.send_nowait(output)
                    except anyio.BrokenResourceError:  # the consumer left; its abort is queued
                        del self._streams[output.request_id]
                        continue
                    if output.finished:
                        send.close()
                        del self._streams[output.request_id]
                await anyio.lowlevel.checkpoint()
        except Exception as exc:  # a model failure ends every stream with the error instead of hanging them
            self._failure = exc
            for send in self._streams.values():
                send.close()
            self._streams.clear()
            raise

    def _take_new_work(self) -> None:
        pending, self._pending = self._pending, []
        for req, send in pending:
            self.engine.enqueue(req)
            self._streams[req.request_id] = send
        aborts, self._aborts = self._aborts, []
        for request_id in aborts:
            self.engine.abort(request_id)
            send = self._streams.pop(request_id, None)
            if send is not None:
                send.close()
