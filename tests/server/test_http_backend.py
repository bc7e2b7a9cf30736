"""HttpChatBackend: against our server over loopback with the real model (asyncio and trio), and against a
scripted loopback server for retries, Retry-After, malformed streams and tool-call decoding."""

import json
import socket
from collections.abc import Iterator
from email.utils import formatdate
from typing import Any

import httpx
import pytest

from pipo_agent.backend import (
    ChatRequest,
    FinishEvent,
    ReasoningDelta,
    SamplingSettings,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    UsageEvent,
)
from pipo_agent.backends.http import (
    HttpBackendConfig,
    HttpChatBackend,
    HttpConnectionError,
    HttpStatusError,
    StreamFormatError,
)
from pipo_agent.backends.http.retry import retry_delay
from pipo_agent.backends.http.sse import sse_data
from pipo_agent.backends.http.wire import chat_body
from pipo_agent.messages import (
    AssistantMessage,
    FinishReason,
    InvalidToolCall,
    SystemMessage,
    ToolCall,
    ToolResultMessage,
    UserMessage,
)
from tests.server.conftest import (
    API_KEY,
    LONG_TASK,
    MODEL,
    LiveServer,
    server_config,
    serving,
    wait_until_idle,
)
from tests.server.test_api import SYSTEM, TOOLS

QUESTION = [SystemMessage(content=SYSTEM), UserMessage(content="How many dollars do 9 kg of garlic cost?")]


class Sleeps(list[float]):
    async def __call__(self, seconds: float) -> None:
        self.append(seconds)


def backend_for(url: str, sleeps: Sleeps | None = None, **options: Any) -> HttpChatBackend:
    config = HttpBackendConfig(base_url=f"{url}/v1", model=MODEL, api_key=API_KEY, jitter=0.0, **options)
    return HttpChatBackend(config, sleep=sleeps if sleeps is not None else Sleeps())


async def events_of(backend: HttpChatBackend, request: ChatRequest) -> list[StreamEvent]:
    return [event async for event in backend.stream(request)]


# ---- against our server, with the real model ----


@pytest.mark.anyio
async def test_a_turn_with_a_tool_call(live: LiveServer) -> None:
    # Room for the reasoning and the whole call: the default model thinks for ~60 tokens before calling.
    request = ChatRequest(messages=QUESTION, tools=TOOLS, sampling=SamplingSettings(max_tokens=160, tau=0.8))
    async with backend_for(live.url) as backend:
        events = await events_of(backend, request)
        result = await backend.complete(request)
    kinds = [event.kind for event in events]
    assert kinds[0] == "reasoning_delta" and kinds[-2:] == ["usage", "finish"]
    calls = [e.call for e in events if isinstance(e, ToolCallDelta)]
    assert isinstance(calls[0], ToolCall) and (calls[0].name, calls[0].arguments) == (
        "lookup",
        {"item": "garlic"},
    )
    usage = next(e.usage for e in events if isinstance(e, UsageEvent))
    assert usage.tau == 0.8 and usage.steps and usage.drafts_proposed is not None
    assert 0 < usage.reasoning_tokens <= usage.completion_tokens <= 160
    assert result.message.tool_calls[0].arguments == {"item": "garlic"}  # greedy: the same turn again
    assert result.message.reasoning == "".join(e.text for e in events if isinstance(e, ReasoningDelta))


@pytest.mark.anyio
async def test_a_history_round_trips(live: LiveServer) -> None:
    """Valid and invalid calls and their results go back to the server as the model wrote them."""
    history = [
        *QUESTION,
        AssistantMessage(
            reasoning="I look up garlic.",
            tool_calls=[ToolCall(id="call_1", name="lookup", arguments={"item": "garlic"})],
            invalid_tool_calls=[InvalidToolCall(id="call_2", raw="{bad", error="not JSON")],
        ),
        ToolResultMessage(tool_call_id="call_1", name="lookup", content="garlic: 410 cents per kg"),
        ToolResultMessage(tool_call_id="call_2", name=None, content="Error: not JSON", is_error=True),
    ]
    request = ChatRequest(messages=history, tools=TOOLS, sampling=SamplingSettings(max_tokens=4))
    async with backend_for(live.url) as backend:
        result = await backend.complete(request)
    assert result.usage.prompt_tokens > 60 and result.finish_reason in (
        FinishReason.STOP,
        FinishReason.LENGTH,
    )


@pytest.mark.anyio
async def test_closing_the_stream_early_frees_the_request(live: LiveServer) -> None:
    request = ChatRequest(
        messages=[UserMessage(content=LONG_TASK)], sampling=SamplingSettings(max_tokens=2000, tau=1.0)
    )
    async with backend_for(live.url) as backend:
        events = backend.stream(request)
        first = await anext(aiter(events))
        assert isinstance(first, ReasoningDelta)
        await events.aclose()  # type: ignore[attr-defined]
    wait_until_idle(live, timeout=10)


@pytest.mark.anyio
async def test_a_bad_request_is_not_retried(live: LiveServer) -> None:
    sleeps = Sleeps()
    async with backend_for(live.url, sleeps) as backend:
        with pytest.raises(HttpStatusError, match=r"400.*tau=3.*\[-1, 1\]") as caught:
            await backend.complete(ChatRequest(messages=QUESTION, sampling=SamplingSettings(tau=3)))
    assert caught.value.status_code == 400 and sleeps == []


# ---- against a scripted server ----


def sse(*payloads: Any) -> bytes:
    return b"".join(f"data: {json.dumps(p)}\n\n".encode() for p in payloads) + b"data: [DONE]\n\n"


def delta(**fields: Any) -> dict[str, Any]:
    return {
        "id": "x",
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": fields, "finish_reason": None}],
    }


def finish(reason: str) -> dict[str, Any]:
    return {"id": "x", "choices": [{"index": 0, "delta": {}, "finish_reason": reason}]}


USAGE = {
    "id": "x",
    "choices": [],
    "usage": {
        "prompt_tokens": 5,
        "completion_tokens": 9,
        "total_tokens": 14,
        "completion_tokens_details": {"reasoning_tokens": 3},
        "pipo": {"steps": 6, "drafts_proposed": 5, "drafts_committed": 3, "tokens_per_step": 1.5, "tau": 0.9},
    },
}

GOOD = sse(
    delta(role="assistant", content=""),
    delta(reasoning_content="Let me "),
    delta(reasoning_content="think."),
    delta(content="Calling."),
    delta(
        tool_calls=[
            {"index": 0, "id": "c1", "type": "function", "function": {"name": "calc", "arguments": '{"e'}}
        ]
    ),
    delta(tool_calls=[{"index": 0, "function": {"arguments": 'xpression": "1+1"}'}}]),
    delta(
        tool_calls=[
            {"index": 1, "id": "c2", "type": "function", "function": {"name": "calc", "arguments": "{bad"}}
        ]
    ),
    delta(
        tool_calls=[
            {"index": 2, "id": "c3", "type": "function", "function": {"name": "calc", "arguments": "[1]"}}
        ]
    ),
    finish("tool_calls"),
    USAGE,
)


class Scripted:
    """A loopback server that answers each request with the next scripted (status, headers, body)."""

    def __init__(self, answers: list[tuple[int, dict[str, str], bytes]]) -> None:
        self.answers = answers
        self.bodies: list[dict[str, Any]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.bodies.append(json.loads(body))
        status, headers, content = self.answers[min(len(self.bodies), len(self.answers)) - 1]
        raw_headers = [(k.encode(), v.encode()) for k, v in headers.items()]
        await send({"type": "http.response.start", "status": status, "headers": raw_headers})
        await send({"type": "http.response.body", "body": content})


@pytest.fixture
def scripted() -> Iterator[tuple[Scripted, str]]:
    app = Scripted([])
    with serving(app, server_config()) as server:
        yield app, f"http://127.0.0.1:{server.port}"


def error_body(message: str) -> bytes:
    return json.dumps({"error": {"message": message, "type": "x", "param": None, "code": None}}).encode()


@pytest.mark.anyio
async def test_decoding_a_stream(scripted: tuple[Scripted, str]) -> None:
    app, url = scripted
    app.answers = [(200, {"content-type": "text/event-stream"}, GOOD)]
    request = ChatRequest(
        messages=[UserMessage(content="hi")],
        sampling=SamplingSettings(
            temperature=0.5, max_tokens=9, stop=["\n\n"], seed=7, tau=0.6, task_type="arithmetic"
        ),
    )
    async with backend_for(url) as backend:
        events = await events_of(backend, request)
    assert events[:3] == [
        ReasoningDelta(text="Let me "),
        ReasoningDelta(text="think."),
        TextDelta(text="Calling."),
    ]
    calls = [e.call for e in events if isinstance(e, ToolCallDelta)]
    assert calls[0] == ToolCall(id="c1", name="calc", arguments={"expression": "1+1"})
    assert (
        isinstance(calls[1], InvalidToolCall)
        and calls[1].raw == "{bad"
        and "not valid JSON" in calls[1].error
    )
    assert isinstance(calls[2], InvalidToolCall) and "must be a JSON object" in calls[2].error
    usage = events[-2]
    assert (
        isinstance(usage, UsageEvent)
        and usage.usage.reasoning_tokens == 3
        and usage.usage.tokens_per_step == 1.5
    )
    assert events[-1] == FinishEvent(finish_reason=FinishReason.STOP)
    sent = app.bodies[0]
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    assert (sent["tau"], sent["task_type"], sent["seed"], sent["stop"]) == (0.6, "arithmetic", 7, ["\n\n"])
    assert sent["model"] == MODEL and "top_k" not in sent


@pytest.mark.anyio
async def test_429_and_5xx_are_retried_honouring_retry_after(scripted: tuple[Scripted, str]) -> None:
    app, url = scripted
    app.answers = [
        (429, {"retry-after": "2"}, error_body("busy")),
        (503, {"retry-after": formatdate(usegmt=True)}, error_body("draining")),
        (502, {}, b"bad gateway"),
        (200, {"content-type": "text/event-stream"}, GOOD),
    ]
    sleeps = Sleeps()
    async with backend_for(url, sleeps, backoff_initial_s=0.25) as backend:
        result = await backend.complete(ChatRequest(messages=[UserMessage(content="hi")]))
    assert len(app.bodies) == 4 and result.message.content == "Calling."
    assert sleeps[0] == 2.0 and 0.0 <= sleeps[1] <= 1.0 and sleeps[2] == 1.0  # Retry-After, a date, backoff


@pytest.mark.anyio
async def test_retries_run_out(scripted: tuple[Scripted, str]) -> None:
    app, url = scripted
    app.answers = [(503, {}, error_body("still starting"))]
    sleeps = Sleeps()
    async with backend_for(url, sleeps, max_retries=3) as backend:
        with pytest.raises(HttpStatusError, match="503: still starting") as caught:
            await backend.complete(ChatRequest(messages=[UserMessage(content="hi")]))
    assert caught.value.status_code == 503 and sleeps == [0.5, 1.0, 2.0] and len(app.bodies) == 4


@pytest.mark.anyio
async def test_malformed_streams(scripted: tuple[Scripted, str]) -> None:
    app, url = scripted
    request = ChatRequest(messages=[UserMessage(content="hi")])
    cases = {
        sse(delta(content="cut")): "without a finish reason",
        sse(delta(content="a"), {"error": {"message": "the server shut down"}}): "shut down",
        b"data: {not json\n\n": "not JSON",
        sse(finish("abort")): "'abort'",
    }
    async with backend_for(url) as backend:
        for body, message in cases.items():
            app.answers = [(200, {"content-type": "text/event-stream"}, body)]
            app.bodies.clear()
            with pytest.raises(StreamFormatError, match=message):
                await backend.complete(request)


@pytest.mark.anyio
async def test_connection_errors_are_retried_then_raised() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sleeps = Sleeps()
    async with backend_for(f"http://127.0.0.1:{port}", sleeps, max_retries=2) as backend:
        with pytest.raises(HttpConnectionError, match="cannot reach"):
            await backend.complete(ChatRequest(messages=[UserMessage(content="hi")]))
    assert sleeps == [0.5, 1.0]


@pytest.mark.anyio
async def test_a_caller_owned_client_is_left_open(scripted: tuple[Scripted, str]) -> None:
    app, url = scripted
    app.answers = [(200, {"content-type": "text/event-stream"}, GOOD)]
    async with httpx.AsyncClient() as client:
        config = HttpBackendConfig(base_url=f"{url}/v1", model=MODEL)
        async with HttpChatBackend(config, client=client) as backend:
            await backend.complete(ChatRequest(messages=[UserMessage(content="hi")]))
        assert not client.is_closed


# ---- pure parts ----


def test_request_body_mapping() -> None:
    request = ChatRequest(
        messages=[
            UserMessage(content="q"),
            AssistantMessage(
                content="",
                reasoning="r",
                tool_calls=[ToolCall(id="a", name="f", arguments={"x": 1})],
                invalid_tool_calls=[InvalidToolCall(id="b", raw="{oops", error="e", name="f")],
            ),
            ToolResultMessage(tool_call_id="a", name="f", content="1"),
        ],
        tools=TOOLS,
    )
    config = HttpBackendConfig(base_url="http://127.0.0.1:1/v1", model="m", extra_body={"top_k": 20})
    body = chat_body(request, config)
    assistant = body["messages"][1]
    assert assistant["reasoning_content"] == "r"
    assert [c["function"] for c in assistant["tool_calls"]] == [
        {"name": "f", "arguments": '{"x": 1}'},
        {"name": "f", "arguments": "{oops"},
    ]
    assert body["messages"][2] == {"role": "tool", "tool_call_id": "a", "content": "1"}
    assert body["tools"] == TOOLS and body["top_k"] == 20 and "tau" not in body and "max_tokens" not in body
    tuned = request.model_copy(update={"sampling": SamplingSettings(tau=0.7, task_type="arithmetic")})
    ours = chat_body(tuned, config)
    assert (ours["tau"], ours["task_type"]) == (0.7, "arithmetic") and "custom_params" not in ours
    sglang = chat_body(tuned, config.model_copy(update={"dialect": "sglang"}))
    assert sglang["custom_params"] == {"tau": 0.7} and "tau" not in sglang and "task_type" not in sglang


def test_retry_delay() -> None:
    config = HttpBackendConfig(
        base_url="http://x/v1", model="m", jitter=0.0, backoff_max_s=3.0, max_retry_after_s=10
    )
    assert [retry_delay(n, None, config) for n in range(4)] == [0.5, 1.0, 2.0, 3.0]
    assert retry_delay(0, "7", config) == 7.0 and retry_delay(0, "100", config) == 10.0
    assert retry_delay(0, "soon", config) == 0.5  # unparsable: backoff
    jittery = config.model_copy(update={"jitter": 0.5})
    assert all(0.25 <= retry_delay(0, None, jittery) <= 0.5 for _ in range(50))


@pytest.mark.anyio
async def test_sse_parsing() -> None:
    async def lines() -> Any:
        for line in [
            ": comment",
            "event: message",
            "data: one",
            "data: two",
            "",
            "id: 3",
            "data:three",
            "",
            "data: end",
        ]:
            yield line

    assert [data async for data in sse_data(lines())] == ["one\ntwo", "three", "end"]
