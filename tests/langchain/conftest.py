"""LangChain adapter tests: the event loop, and shared helpers (raw turns in the PIPO format, a recording
backend).

Async tests run on asyncio only: LangChain's async API is asyncio-based (``asyncio.gather``, asyncio
callbacks), so trio cannot drive it. The standard ``langchain-tests`` classes mark themselves with
``anyio``, since their async tests carry no marker and this project does not switch pytest-asyncio's
auto mode on for the whole suite."""

import json
import threading
from collections.abc import AsyncIterator, Sequence
from typing import Any, Self

import pytest

from pipo_agent.backend import ChatBackend, ChatRequest, StreamEvent
from pipo_agent.messages import AssistantMessage
from pipo_agent.testing import ScriptedBackend, ScriptedTurn


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def call(name: str, **arguments: Any) -> str:
    """One tool-call block as the model writes it."""
    return (
        f"<tool_call>\n{json.dumps({'name': name, 'arguments': arguments}, ensure_ascii=False)}\n</tool_call>"
    )


def turn(reasoning: str, content: str = "", *calls: str) -> str:
    """A raw turn in the PIPO format (generation starts inside the think block)."""
    return f"{reasoning}\n</think>\n{content}" + "".join(calls)


class RecordingBackend(ChatBackend):
    """A :class:`ScriptedBackend` that records the thread of each request, closed streams and its lifecycle."""

    def __init__(
        self,
        script: Sequence[str | AssistantMessage | ScriptedTurn | BaseException],
        *,
        chunk_size: int = 3,
        chunk_delay: float = 0.0,
    ) -> None:
        self.scripted = ScriptedBackend(script, chunk_size=chunk_size, chunk_delay=chunk_delay)
        self.threads: list[threading.Thread] = []
        self.closed_streams = 0
        self.entered = 0
        self.exited = 0

    @property
    def requests(self) -> list[ChatRequest]:
        return self.scripted.requests

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        self.threads.append(threading.current_thread())
        try:
            async for event in self.scripted.stream(request):
                yield event
        finally:
            self.closed_streams += 1

    async def __aenter__(self) -> Self:
        self.entered += 1
        return self

    async def aclose(self) -> None:
        self.exited += 1
