"""Pieces both endpoints share: SSE framing, the streamed response that releases its admission and aborts
its request whatever way it ends, collecting a non-streamed turn unless the client leaves, and ids."""

import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio
from fastapi import Request
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from pipo_agent.server.config import ServerConfig
from pipo_agent.server.errors import APIError, ModelNotFoundError

__all__ = ["DONE", "AdmittedStream", "ResponseContext", "check_model", "run_unless_disconnected", "sse"]

DONE = "data: [DONE]\n\n"
T = TypeVar("T")


def sse(payload: dict[str, Any]) -> str:
    """One server-sent event carrying ``payload`` as JSON."""
    return f"data: {json.dumps(payload, ensure_ascii=False, separators=(',', ':'))}\n\n"


def sse_error(exc: APIError) -> str:
    """A failure after the stream started: OpenAI's error object as an event (clients raise on it)."""
    return sse(exc.body())


def check_model(model: str, config: ServerConfig) -> None:
    if model != config.served_model_name:
        raise ModelNotFoundError(
            f"the model {model!r} does not exist here; this server serves {config.served_model_name!r}",
            param="model",
            code="model_not_found",
        )


@dataclass(frozen=True)
class ResponseContext:
    prefix: str
    model: str
    id: str = ""
    created: int = field(default_factory=lambda: int(time.time()))

    def __post_init__(self) -> None:
        if not self.id:
            object.__setattr__(self, "id", f"{self.prefix}-{uuid.uuid4().hex}")


class AdmittedStream(StreamingResponse):
    """An SSE response that, however it ends (finished, client gone, server cut-off), closes its event
    generator, which aborts the engine request and frees its KV, and then releases its admission."""

    def __init__(self, events: AsyncIterator[str], release: Callable[[], None]) -> None:
        super().__init__(events, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        self._events = events
        self._release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            try:
                with anyio.CancelScope(shield=True):
                    aclose = getattr(self._events, "aclose", None)
                    if aclose is not None:
                        await aclose()
            finally:
                self._release()


async def run_unless_disconnected(request: Request, work: Callable[[], Coroutine[Any, Any, T]]) -> T | None:
    """``await work()``, cancelled if the client disconnects first (then None): a non-streamed request
    whose client left must not keep its sequence in the engine."""
    result: list[T] = []

    async def watch(scope: anyio.CancelScope) -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass
        scope.cancel()

    async with anyio.create_task_group() as group:
        group.start_soon(watch, group.cancel_scope)
        result.append(await work())
        group.cancel_scope.cancel()
    return result[0] if result else None
