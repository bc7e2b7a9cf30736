"""The HTTP API over real loopback HTTP with the real default model: responses, streams, errors, auth,
back-pressure, and that a client leaving (streamed or not) takes its request out of the engine.

The checks are about mechanics (shapes, counts, consistency between streamed and whole answers), not
about whether the small model answers correctly. Greedy decoding makes the outputs deterministic.
"""

import json
import threading
from typing import Any

import httpx
import pytest

from tests.server.conftest import LONG_TASK, MODEL, LiveServer, wait_until_idle

SYSTEM = "You solve tasks step by step and call tools when they help."
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup",
            "description": "Look up a price or a unit.",
            "parameters": {
                "type": "object",
                "properties": {"item": {"type": "string"}},
                "required": ["item"],
            },
        },
    }
]


def chat_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "How many dollars do 9 kg of garlic cost?"}],
        "max_tokens": 24,
    }
    return {**body, **overrides}


def post(live: LiveServer, path: str, body: Any, **kwargs: Any) -> httpx.Response:
    return httpx.post(f"{live.url}{path}", json=body, headers=live.headers, timeout=60, **kwargs)


def sse_events(text: str) -> list[Any]:
    events = [line.removeprefix("data: ") for line in text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]" and "[DONE]" not in events[:-1]
    return [json.loads(event) for event in events[:-1]]


def assert_error(response: httpx.Response, status: int, *fragments: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    for fragment in fragments:
        assert fragment in error["message"], error
    return error


def test_models_health_and_metrics(live: LiveServer) -> None:
    models = httpx.get(f"{live.url}/v1/models", headers=live.headers).json()
    assert [m["id"] for m in models["data"]] == [MODEL] and models["object"] == "list"
    health = httpx.get(f"{live.url}/health").json()  # no key needed
    assert health["status"] == "ok" and health["engine"]["total_blocks"] > 0
    post(live, "/v1/chat/completions", chat_body(max_tokens=4))
    metrics = httpx.get(f"{live.url}/metrics", headers=live.headers)
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    assert 'pipo_requests_total{endpoint="/v1/chat/completions",status="200"}' in text
    for name in (
        "pipo_requests_in_flight",
        "pipo_generated_tokens_total",
        "pipo_time_to_first_token_seconds_bucket",
        "pipo_time_per_output_token_seconds_bucket",
        "pipo_tokens_per_step_bucket",
        'pipo_engine_sequences{state="running"}',
        "pipo_engine_free_kv_blocks",
    ):
        assert name in text, name


def test_a_key_is_required(live: LiveServer) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic dGVzdA=="}):
        response = httpx.post(f"{live.url}/v1/chat/completions", json=chat_body(), headers=headers)
        error = assert_error(response, 401, "API key")
        assert error["type"] == "authentication_error" and response.headers["www-authenticate"] == "Bearer"
    assert httpx.get(f"{live.url}/metrics").status_code == 401


def test_chat_completion_with_tools_and_usage(live: LiveServer) -> None:
    messages = [{"role": "system", "content": SYSTEM}, *chat_body()["messages"]]
    data = post(live, "/v1/chat/completions", chat_body(messages=messages, tools=TOOLS, max_tokens=64)).json()
    assert data["object"] == "chat.completion" and data["id"].startswith("chatcmpl-")
    choice = data["choices"][0]
    message = choice["message"]
    assert message["role"] == "assistant" and message["reasoning_content"]
    calls = message["tool_calls"]
    assert calls and calls[0]["type"] == "function" and calls[0]["function"]["name"] == "lookup"
    assert json.loads(calls[0]["function"]["arguments"]) == {"item": "garlic"}
    assert choice["finish_reason"] in ("tool_calls", "length")
    usage = data["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert 0 < usage["completion_tokens_details"]["reasoning_tokens"] <= usage["completion_tokens"] <= 64
    pipo = usage["pipo"]
    assert set(pipo) == {
        "steps",
        "drafts_proposed",
        "drafts_committed",
        "tokens_per_step",
        "tau",
        "prefix_cached_tokens",
    }
    assert pipo["tau"] == 0.9 and 1.0 <= pipo["tokens_per_step"] <= 2.0
    assert pipo["tokens_per_step"] == pytest.approx(usage["completion_tokens"] / pipo["steps"])
    assert pipo["drafts_committed"] <= pipo["drafts_proposed"] <= pipo["steps"]
    # The same prompt again reuses its cached prefix.
    again = post(live, "/v1/chat/completions", chat_body(messages=messages, tools=TOOLS, max_tokens=4)).json()
    assert again["usage"]["pipo"]["prefix_cached_tokens"] > 0
    assert (
        again["usage"]["prompt_tokens_details"]["cached_tokens"]
        == again["usage"]["pipo"]["prefix_cached_tokens"]
    )


def test_stream_equals_the_whole_answer(live: LiveServer) -> None:
    messages = [{"role": "system", "content": SYSTEM}, *chat_body()["messages"]]
    body = chat_body(messages=messages, tools=TOOLS, max_tokens=64)
    whole = post(live, "/v1/chat/completions", body).json()
    response = post(
        live, "/v1/chat/completions", {**body, "stream": True, "stream_options": {"include_usage": True}}
    )
    assert response.headers["content-type"].startswith("text/event-stream")
    chunks = sse_events(response.text)
    assert len({chunk["id"] for chunk in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    deltas = [c["choices"][0] for c in chunks if c["choices"]]
    finishes = [d["finish_reason"] for d in deltas if d["finish_reason"]]
    assert finishes == [whole["choices"][0]["finish_reason"]]
    reasoning = "".join(d["delta"].get("reasoning_content") or "" for d in deltas)
    content = "".join(d["delta"].get("content") or "" for d in deltas)
    calls = [call for d in deltas for call in d["delta"].get("tool_calls") or ()]
    message = whole["choices"][0]["message"]
    assert reasoning == message["reasoning_content"] and content == (message["content"] or "")
    assert [c["index"] for c in calls] == list(range(len(calls)))
    assert [c["function"] for c in calls] == [c["function"] for c in message["tool_calls"]]
    assert chunks[-1]["choices"] == [] and all(c["usage"] is None for c in chunks[:-1])
    usage, expected = chunks[-1]["usage"], whole["usage"]
    assert usage["completion_tokens"] == expected["completion_tokens"]
    assert usage["completion_tokens_details"] == expected["completion_tokens_details"]
    without_usage = sse_events(post(live, "/v1/chat/completions", {**body, "stream": True}).text)
    assert all("usage" not in chunk for chunk in without_usage)


def test_tau_and_task_type_per_request(live: LiveServer) -> None:
    always = post(live, "/v1/chat/completions", chat_body(tau=-1.0)).json()["usage"]["pipo"]
    assert always["tau"] == -1.0 and always["drafts_committed"] == always["drafts_proposed"]
    never = post(live, "/v1/chat/completions", chat_body(tau=1.0)).json()["usage"]["pipo"]
    assert never["tau"] == 1.0 and never["drafts_committed"] == 0 and never["tokens_per_step"] == 1.0
    by_type = post(live, "/v1/chat/completions", chat_body(task_type="strings")).json()["usage"]["pipo"]
    assert by_type["tau"] == 0.5
    explicit = post(live, "/v1/chat/completions", chat_body(task_type="strings", tau=0.7)).json()
    assert explicit["usage"]["pipo"]["tau"] == 0.7


def test_tool_choice(live: LiveServer) -> None:
    auto = post(live, "/v1/chat/completions", chat_body(tools=TOOLS, tool_choice="auto", max_tokens=1)).json()
    none = post(live, "/v1/chat/completions", chat_body(tools=TOOLS, tool_choice="none", max_tokens=1)).json()
    named = {"type": "function", "function": {"name": "lookup"}}
    chosen = post(
        live, "/v1/chat/completions", chat_body(tools=TOOLS, tool_choice=named, max_tokens=1)
    ).json()
    assert none["usage"]["prompt_tokens"] < auto["usage"]["prompt_tokens"] == chosen["usage"]["prompt_tokens"]
    unknown = {"type": "function", "function": {"name": "nope"}}
    assert_error(
        post(live, "/v1/chat/completions", chat_body(tools=TOOLS, tool_choice=unknown)), 400, "'nope'"
    )
    assert_error(
        post(live, "/v1/chat/completions", chat_body(tool_choice="required")), 400, "at least one tool"
    )


def test_a_history_with_tool_calls_and_results(live: LiveServer) -> None:
    messages = [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "How many dollars do 9 kg of garlic cost?"},
        {
            "role": "assistant",
            "content": None,
            "reasoning_content": "I look up garlic.",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "lookup", "arguments": '{"item": "garlic"}'},
                },
                {
                    "id": "call_2",
                    "type": "function",
                    "function": {"name": "lookup", "arguments": "{not json"},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "garlic: 410 cents per kg"},
        {"role": "tool", "tool_call_id": "call_2", "content": "Error: the arguments are not valid JSON"},
    ]
    response = post(live, "/v1/chat/completions", chat_body(messages=messages, tools=TOOLS, max_tokens=8))
    assert response.status_code == 200, response.text
    assert response.json()["usage"]["prompt_tokens"] > 60


def test_completions(live: LiveServer) -> None:
    body = {"model": MODEL, "prompt": "Count: 1, 2, 3,", "max_tokens": 12}
    whole = post(live, "/v1/completions", body).json()
    assert whole["object"] == "text_completion" and whole["choices"][0]["finish_reason"] in ("stop", "length")
    assert whole["usage"]["completion_tokens"] <= 12 and whole["usage"]["pipo"]["steps"] > 0
    chunks = sse_events(
        post(
            live, "/v1/completions", {**body, "stream": True, "stream_options": {"include_usage": True}}
        ).text
    )
    assert "".join(c["choices"][0]["text"] for c in chunks if c["choices"]) == whole["choices"][0]["text"]
    assert chunks[-1]["usage"]["completion_tokens"] == whole["usage"]["completion_tokens"]
    listed = post(live, "/v1/completions", {**body, "prompt": [body["prompt"]]}).json()
    assert listed["choices"][0]["text"] == whole["choices"][0]["text"]


def test_bad_requests_get_clear_4xx_errors(live: LiveServer) -> None:
    chat = "/v1/chat/completions"
    error = assert_error(post(live, chat, chat_body(tau=3)), 400, "tau=3", "[-1, 1]")
    assert error["param"] == "tau" and error["type"] == "invalid_request_error"
    assert_error(post(live, chat, chat_body(temperature=-1)), 400, "temperature", ">= 0")
    assert_error(post(live, chat, chat_body(top_p=0)), 400, "top_p", "(0, 1]")
    assert_error(post(live, chat, chat_body(max_tokens=0)), 400, "max_tokens")
    assert_error(post(live, chat, chat_body(max_tokens=10**6)), 400, "over this server's limit")
    assert_error(post(live, chat, chat_body(n=2)), 400, "only n=1")
    assert_error(post(live, chat, chat_body(logprobs=True)), 400, "logprobs")
    assert_error(post(live, chat, chat_body(frobnicate=1)), 400, "frobnicate", "Extra inputs")
    assert_error(post(live, chat, chat_body(messages=[])), 400, "messages")
    assert_error(
        post(live, chat, chat_body(messages=[{"role": "wizard", "content": "hi"}])), 400, "messages.0"
    )
    image = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]
    assert_error(post(live, chat, chat_body(messages=image)), 400, "messages.0")
    del_model = {k: v for k, v in chat_body().items() if k != "model"}
    assert_error(post(live, chat, del_model), 400, "model", "Field required")
    assert_error(post(live, chat, chat_body(model="gpt-4")), 404, "'gpt-4' does not exist", "pipo-default")
    raw = httpx.post(
        f"{live.url}{chat}",
        content=b"{not json",
        headers={**live.headers, "content-type": "application/json"},
    )
    assert_error(raw, 400, "JSON")
    long_prompt = [{"role": "user", "content": "7 " * 3000}]
    error = assert_error(post(live, chat, chat_body(messages=long_prompt)), 400, "over the context")
    assert error["code"] == "context_length_exceeded"
    huge = httpx.post(
        f"{live.url}{chat}", content=b"x" * (live.config.max_body_bytes + 1), headers=live.headers
    )
    assert_error(huge, 413, "over this server's limit")
    assert_error(httpx.get(f"{live.url}/v1/nothing-here", headers=live.headers), 404)
    # The server keeps serving.
    assert post(live, chat, chat_body(max_tokens=2)).status_code == 200
    assert httpx.get(f"{live.url}/health").json()["status"] == "ok"


def test_back_pressure_answers_429_with_retry_after(live: LiveServer) -> None:
    """The live server admits 4 running + 4 queued requests; 12 at once leave at least 4 refused."""
    wait_until_idle(live)
    statuses: list[int] = []
    retry_after: list[str] = []
    gate = threading.Barrier(12)

    def client() -> None:
        body = chat_body(max_tokens=96, tau=1.0, stream=True)
        gate.wait()
        with httpx.stream(
            "POST", f"{live.url}/v1/chat/completions", json=body, headers=live.headers, timeout=120
        ) as r:
            statuses.append(r.status_code)
            if r.status_code == 429:
                retry_after.append(r.headers["retry-after"])
                r.read()
                assert r.json()["error"]["code"] == "overloaded"
            else:
                assert r.read().endswith(b"data: [DONE]\n\n")

    threads = [threading.Thread(target=client) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses.count(200) >= 1 and statuses.count(429) >= 4 and set(statuses) <= {200, 429}
    assert set(retry_after) == {"1"}
    wait_until_idle(live)
    assert post(live, "/v1/chat/completions", chat_body(max_tokens=2)).status_code == 200


def test_a_stream_whose_client_leaves_is_aborted(live: LiveServer) -> None:
    wait_until_idle(live)

    def aborted() -> float:
        metrics = httpx.get(f"{live.url}/metrics", headers=live.headers).text
        line = next(
            (
                ln
                for ln in metrics.splitlines()
                if ln.startswith('pipo_requests_finished_total{finish_reason="abort"}')
            ),
            None,
        )
        return float(line.split()[-1]) if line else 0.0

    before = aborted()
    body = chat_body(messages=[{"role": "user", "content": LONG_TASK}], max_tokens=2000, tau=1.0, stream=True)
    with httpx.stream(
        "POST", f"{live.url}/v1/chat/completions", json=body, headers=live.headers, timeout=60
    ) as r:
        lines = r.iter_lines()
        seen = [next(lines) for _ in range(8)]
        assert any("reasoning_content" in line for line in seen)
        busy = httpx.get(f"{live.url}/health").json()["engine"]
        assert busy["admitted"] == 1 and busy["unfinished"] == 1
    engine = wait_until_idle(live, timeout=10)  # closed after ~8 of 2000 tokens (20 s of work): aborted
    assert engine["free_blocks"] == engine["total_blocks"]
    assert aborted() == before + 1


def test_a_non_streamed_request_whose_client_leaves_is_aborted(live: LiveServer) -> None:
    wait_until_idle(live)
    body = chat_body(messages=[{"role": "user", "content": LONG_TASK}], max_tokens=2000, tau=1.0)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{live.url}/v1/chat/completions", json=body, headers=live.headers, timeout=1.0)
    wait_until_idle(live, timeout=10)  # the client left after 1 s of 2000 tokens (20 s of work): aborted
