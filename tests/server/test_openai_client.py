"""The official ``openai`` package as a real client of our server: chat, streaming, tools, completions, errors."""

import json

import openai
import pytest

from tests.server.conftest import API_KEY, MODEL, LiveServer
from tests.server.test_api import SYSTEM, TOOLS

MESSAGES = [
    {"role": "system", "content": SYSTEM},
    {"role": "user", "content": "How many dollars do 9 kg of garlic cost?"},
]


@pytest.fixture
def client(live: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live.url}/v1", api_key=API_KEY, max_retries=0, timeout=60)


def test_chat_with_tools(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model=MODEL,
        messages=MESSAGES,
        tools=TOOLS,
        max_tokens=160,
        extra_body={"tau": 0.8, "task_type": "conversion"},
    )
    message = completion.choices[0].message
    assert message.model_extra is not None and message.model_extra["reasoning_content"]
    assert message.tool_calls and message.tool_calls[0].function.name == "lookup"
    assert json.loads(message.tool_calls[0].function.arguments) == {"item": "garlic"}
    usage = completion.usage
    assert usage is not None and usage.completion_tokens_details is not None
    assert 0 < (usage.completion_tokens_details.reasoning_tokens or 0) <= usage.completion_tokens
    assert usage.model_extra is not None and usage.model_extra["pipo"]["tau"] == 0.8
    # The tool call goes back with its result, as an OpenAI client sends it.
    call = message.tool_calls[0]
    follow_up = client.chat.completions.create(
        model=MODEL,
        messages=[
            *MESSAGES,
            {"role": "assistant", "content": message.content, "tool_calls": [call.model_dump()]},
            {"role": "tool", "tool_call_id": call.id, "content": "garlic: 410 cents per kg"},
        ],
        tools=TOOLS,
        max_tokens=8,
    )
    assert follow_up.usage is not None and follow_up.usage.prompt_tokens > usage.prompt_tokens


def test_streaming_chat(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=MODEL,
        messages=MESSAGES,
        tools=TOOLS,
        max_tokens=64,
        stream=True,
        stream_options={"include_usage": True},
    )
    reasoning, calls, finishes, usage = [], [], [], None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            reasoning.append((choice.delta.model_extra or {}).get("reasoning_content") or "")
            calls += choice.delta.tool_calls or []
            if choice.finish_reason:
                finishes.append(choice.finish_reason)
    assert "".join(reasoning) and len(finishes) == 1
    assert calls and calls[0].function is not None and calls[0].function.name == "lookup"
    assert usage is not None and usage.completion_tokens <= 64


def test_completions_and_models(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == [MODEL]
    completion = client.completions.create(model=MODEL, prompt="Count: 1, 2, 3,", max_tokens=8)
    assert completion.choices[0].finish_reason in ("stop", "length") and completion.usage is not None
    streamed = "".join(
        c.choices[0].text
        for c in client.completions.create(model=MODEL, prompt="Count: 1, 2, 3,", max_tokens=8, stream=True)
        if c.choices
    )
    assert streamed == completion.choices[0].text


def test_errors_map_to_the_clients_exceptions(client: openai.OpenAI, live: LiveServer) -> None:
    with pytest.raises(openai.BadRequestError, match=r"tau=3.*\[-1, 1\]"):
        client.chat.completions.create(model=MODEL, messages=MESSAGES, extra_body={"tau": 3})
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client.chat.completions.create(model="gpt-4", messages=MESSAGES)
    anonymous = openai.OpenAI(base_url=f"{live.url}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        anonymous.models.list()
