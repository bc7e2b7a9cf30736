""":class:`HttpChatBackend`: any OpenAI-compatible chat server (``pipo-agent serve``, SGLang, vLLM) as a
:class:`~pipo_agent.backend.ChatBackend`.

Every turn is one streamed ``POST {base_url}/chat/completions`` over a shared ``httpx.AsyncClient``, decoded
by :class:`~pipo_agent.backends.http.wire.ChunkDecoder`. Opening the stream is retried (see
:class:`~pipo_agent.backends.http.config.HttpBackendConfig`); closing the event stream early closes the
HTTP response, which the server takes as a disconnect and aborts the request. Works on asyncio and trio.
"""

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import httpx

from pipo_agent.backend import ChatBackend, ChatRequest, StreamEvent
from pipo_agent.backends.http.config import HttpBackendConfig
from pipo_agent.backends.http.errors import (
    HttpBackendError,
    HttpConnectionError,
    HttpStatusError,
    StreamFormatError,
)
from pipo_agent.backends.http.retry import RETRY_STATUSES, retry_delay
from pipo_agent.backends.http.sse import sse_data
from pipo_agent.backends.http.wire import ChunkDecoder, chat_body

__all__ = ["HttpChatBackend"]

logger = logging.getLogger(__name__)

# Failures before the server saw a complete request, or a server that went away: worth another try.
_RETRY_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.RemoteProtocolError)


class HttpChatBackend(ChatBackend):
    """A chat server reached over HTTP. Give a config (or use :meth:`connect`); pass ``client`` to share a
    caller-owned ``httpx.AsyncClient`` (then its base URL and timeouts are the caller's)."""

    def __init__(
        self,
        config: HttpBackendConfig,
        *,
        client: httpx.AsyncClient | None = None,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        self.config = config
        self._owns_client = client is None
        self._client = client if client is not None else _new_client(config)
        self._sleep = sleep

    @classmethod
    def connect(
        cls, base_url: str, model: str, *, api_key: str | None = None, **options: Any
    ) -> "HttpChatBackend":
        """A backend for ``base_url`` (ending in ``/v1``) serving ``model``; ``options`` are config fields."""
        return cls(HttpBackendConfig(base_url=base_url, model=model, api_key=api_key, **options))

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        response = await self._open(chat_body(request, self.config))
        decoder = ChunkDecoder()
        try:
            async for data in sse_data(response.aiter_lines()):
                if data.strip() == "[DONE]":
                    break
                for event in decoder.feed(_json(data)):
                    yield event
        except httpx.TimeoutException as exc:
            raise HttpConnectionError(
                f"the server sent nothing for {self.config.read_timeout_s} s mid-stream ({type(exc).__name__})"
            ) from exc
        except httpx.HTTPError as exc:
            raise HttpConnectionError(f"the stream from {self.config.base_url} broke: {exc!r}") from exc
        finally:
            await response.aclose()
        for event in decoder.finish():
            yield event

    async def _open(self, body: dict[str, Any]) -> httpx.Response:
        """The streamed response, once its status is a success; retries connect failures, 429 and 5xx."""
        url = f"{self.config.base_url.rstrip('/')}/chat/completions"
        attempt = 0
        while True:
            retry_after: str | None = None
            try:
                request = self._client.build_request("POST", url, json=body)
                response = await self._client.send(request, stream=True)
            except _RETRY_ERRORS as exc:
                failure: HttpBackendError = HttpConnectionError(f"cannot reach {url}: {exc!r}")
            except httpx.HTTPError as exc:
                raise HttpConnectionError(f"the request to {url} failed: {exc!r}") from exc
            else:
                if response.status_code < 400:
                    return response
                failure = HttpStatusError(
                    f"{url} answered {response.status_code}: {await _error_message(response)}",
                    status_code=response.status_code,
                )
                if response.status_code not in RETRY_STATUSES:
                    raise failure
                retry_after = response.headers.get("retry-after")
            if attempt >= self.config.max_retries:
                raise failure
            delay = retry_delay(attempt, retry_after, self.config)
            logger.info("retrying in %.2f s (attempt %d): %s", delay, attempt + 1, failure)
            await self._sleep(delay)
            attempt += 1


def _new_client(config: HttpBackendConfig) -> httpx.AsyncClient:
    headers = {"Accept": "text/event-stream"}
    if config.api_key is not None:
        headers["Authorization"] = f"Bearer {config.api_key.get_secret_value()}"
    timeout = httpx.Timeout(
        connect=config.connect_timeout_s,
        read=config.read_timeout_s,
        write=config.write_timeout_s,
        pool=config.connect_timeout_s,
    )
    return httpx.AsyncClient(headers=headers, timeout=timeout)


async def _error_message(response: httpx.Response) -> str:
    """The server's explanation: OpenAI's ``error.message``, else the start of the body."""
    try:
        raw = await response.aread()
    except httpx.HTTPError:
        return "(no body)"
    finally:
        await response.aclose()
    try:
        payload = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return raw[:500].decode(errors="replace") or "(no body)"
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, dict) and "message" in error:
        return str(error["message"])
    return json.dumps(payload)[:500]


def _json(data: str) -> Any:
    try:
        return json.loads(data)
    except json.JSONDecodeError as exc:
        raise StreamFormatError(f"a stream event is not JSON ({exc.msg}): {data[:200]!r}") from exc
