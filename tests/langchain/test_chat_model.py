"""ChatPIPO over a scripted backend: reasoning kept apart, tool calls, metadata, tool_choice and structured
output enforcement, per-call settings, and where the backend runs (sync, async, inside a running loop, the
caller's loop)."""

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, SystemMessage
from langchain_core.tools import tool
from pydantic import BaseModel, ValidationError

from pipo_agent.backend import ChatBackend, ChatRequest, StreamEvent, TextDelta
from pipo_agent.errors import AgentUsageError, BackendError
from pipo_agent.langchain import ChatPIPO, LoopThreadError, ToolChoiceError
from pipo_agent.langchain.chat_model import _HOSTS
from pipo_agent.messages import Usage
from pipo_agent.testing import ScriptedBackend, ScriptedTurn

from .conftest import RecordingBackend, call, turn


@tool
def magic_function(input: int) -> int:
    """Apply a magic function to an input."""
    return input + 2


@tool
def get_weather(location: str) -> str:
    """Get the weather at a location."""
    return "sunny"


class Joke(BaseModel):
    setup: str
    punchline: str


JOKE = '{"setup": "Why?", "punchline": "Because."}'


def model_over(*script: Any, **params: Any) -> ChatPIPO:
    return ChatPIPO(backend=ScriptedBackend(list(script), chunk_size=params.pop("chunk_size", 3)), **params)


def merged(chunks: list[AIMessageChunk]) -> AIMessageChunk:
    full = chunks[0]
    for chunk in chunks[1:]:
        full = full + chunk
    return full


# ---- reasoning, text, tool calls, metadata ----


def test_reasoning_is_reasoning_content_and_never_text() -> None:
    model = model_over(turn("Let me think: 2+2.", "It is 4."))
    message = model.invoke("What is 2+2?")
    assert message.content == "It is 4."
    assert message.additional_kwargs["reasoning_content"] == "Let me think: 2+2."
    assert message.content_blocks == [
        {"type": "reasoning", "reasoning": "Let me think: 2+2."},
        {"type": "text", "text": "It is 4."},
    ]


def test_streamed_reasoning_never_leaks_into_the_text_even_with_tags_split() -> None:
    model = model_over(turn("secret plan", "visible"), chunk_size=1)
    chunks = list(model.stream("hi"))
    assert "".join(c.text for c in chunks) == "visible"
    full = merged(chunks)
    assert full.additional_kwargs["reasoning_content"] == "secret plan"
    assert chunks[-1].chunk_position == "last" and chunks[-1].usage_metadata is not None
    assert sum(1 for c in chunks if c.usage_metadata) == 1  # usage counted once


def test_tool_calls_and_invalid_calls_invoke_and_stream() -> None:
    raw = turn("need tools", "", call("magic_function", input=3), "<tool_call>\nnot json\n</tool_call>")
    model = model_over(raw, raw)
    message = model.bind_tools([magic_function]).invoke("go")
    assert [(c["name"], c["args"]) for c in message.tool_calls] == [("magic_function", {"input": 3})]
    [invalid] = message.invalid_tool_calls
    assert invalid["args"] == "not json" and "not valid JSON" in (invalid["error"] or "")
    chunks = list(model.bind_tools([magic_function]).stream("go"))
    full = merged(chunks)
    assert [(c["name"], c["args"]) for c in full.tool_calls] == [("magic_function", {"input": 3})]
    [streamed_invalid] = full.invalid_tool_calls
    assert streamed_invalid["id"] in full.response_metadata["tool_call_errors"]
    assert [c["index"] for c in full.tool_call_chunks] == [1, 2]  # reasoning is block 0


def test_output_version_v1_gives_standard_blocks() -> None:
    raw = turn("think", "text", call("magic_function", input=1))
    model = model_over(raw, raw, output_version="v1")
    full = merged(list(model.bind_tools([magic_function]).stream("go")))
    kinds = [block["type"] for block in full.content_blocks]
    assert kinds == ["reasoning", "text", "tool_call"]
    message = model.bind_tools([magic_function]).invoke("go")
    assert [block["type"] for block in message.content_blocks] == ["reasoning", "text", "tool_call"]


def test_usage_and_pipo_statistics() -> None:
    usage = Usage(
        prompt_tokens=10,
        completion_tokens=20,
        reasoning_tokens=12,
        steps=8,
        drafts_proposed=7,
        drafts_committed=5,
        tokens_per_step=2.5,
        tau=0.7,
    )
    model = model_over(ScriptedTurn(turn("r", "a"), usage=usage), ScriptedTurn(turn("r", "a"), usage=usage))
    for message in (model.invoke("x", task_type="arithmetic"), merged(list(model.stream("x")))):
        assert message.usage_metadata == {
            "input_tokens": 10,
            "output_tokens": 20,
            "total_tokens": 30,
            "output_token_details": {"reasoning": 12},
        }
        meta = message.response_metadata
        assert meta["model_name"] == "pipo-default" and meta["finish_reason"] == "stop"
        assert (meta["steps"], meta["drafts_proposed"], meta["drafts_committed"]) == (8, 7, 5)
        assert (meta["tokens_per_step"], meta["tau"], meta["attempts"]) == (2.5, 0.7, 1)


def test_per_call_settings_reach_the_backend() -> None:
    backend = ScriptedBackend([turn("r", "a")] * 3)
    model = ChatPIPO(backend=backend, temperature=0.2, max_tokens=50, stop=["END"], tau=0.9)
    model.invoke("x", tau=0.5, task_type="arithmetic", max_tokens=7, stop=["STOP"])
    model.bind(tau=0.3, top_k=5).invoke("x")
    model.invoke("x")
    first, bound, plain = (request.sampling for request in backend.requests)
    assert (first.tau, first.task_type, first.max_tokens, first.stop, first.temperature) == (
        0.5,
        "arithmetic",
        7,
        ["STOP"],
        0.2,
    )
    assert (bound.tau, bound.top_k, bound.max_tokens) == (0.3, 5, 50)
    assert (plain.tau, plain.stop) == (0.9, ["END"])


def test_misuse_is_rejected_before_anything_runs() -> None:
    backend = ScriptedBackend([])
    model = ChatPIPO(backend=backend, model="mine")
    with pytest.raises(TypeError, match="unknown arguments"):
        model.invoke("x", frequency_penalty=1.0)
    with pytest.raises(ValueError, match="not served here"):
        model.invoke("x", model="other")
    with pytest.raises(ValueError, match="names no bound tool"):
        model.bind_tools([magic_function], tool_choice="get_weather")
    with pytest.raises(ValueError, match="not supported"):
        model.invoke([HumanMessage([{"type": "image", "url": "http://x/y.png"}])])
    with pytest.raises(ValidationError, match="valid: pipo-default, pipo-default-ar"):
        ChatPIPO(model="gpt-4")
    with pytest.raises(ValidationError, match="extra"):
        ChatPIPO(api_key="x")
    assert backend.requests == []


# ---- tool_choice ----


def test_a_forced_tool_choice_re_asks_and_streams_only_the_accepted_try() -> None:
    backend = ScriptedBackend([turn("no", "I will not."), turn("ok", "", call("magic_function", input=3))])
    model = ChatPIPO(backend=backend).bind_tools([magic_function], tool_choice="any")
    chunks = list(model.stream("use it"))
    full = merged(chunks)
    assert "I will not" not in full.text and full.additional_kwargs["reasoning_content"] == "ok"
    assert full.tool_calls[0]["name"] == "magic_function"
    assert full.response_metadata["attempts"] == 2
    first, second = backend.requests
    assert "you must call one of the tools" in first.messages[0].content
    assert second.messages[-1].content.startswith("You did not call one of the tools (magic_function)")
    assert first.messages[0].kind == "system" and len(second.messages) == len(first.messages) + 2


def test_a_named_tool_choice_rejects_other_tools_and_missing_arguments() -> None:
    script = [
        turn("a", "", call("get_weather", location="x")),
        turn("b", "", call("magic_function")),
        turn("c", "", call("magic_function", input=1)),
    ]
    model = model_over(*script, max_retries=2).bind_tools(
        [magic_function, get_weather], tool_choice="magic_function"
    )
    message = model.invoke("go")
    assert message.tool_calls[0]["args"] == {"input": 1} and message.response_metadata["attempts"] == 3


def test_a_forced_tool_choice_that_the_model_ignores_raises() -> None:
    model = model_over(turn("a", "no"), turn("b", "still no"), max_retries=1)
    with pytest.raises(ToolChoiceError, match="in 2 tries") as caught:
        model.bind_tools([magic_function], tool_choice="required").invoke("go")
    assert isinstance(caught.value.message, AIMessage) and caught.value.message.content == "still no"


def test_tool_choice_none_hides_the_tools_and_refuses_calls() -> None:
    backend = ScriptedBackend([turn("r", "", call("magic_function", input=3))])
    message = ChatPIPO(backend=backend).bind_tools([magic_function], tool_choice="none").invoke("go")
    assert backend.requests[0].tools == []
    assert message.tool_calls == [] and "none" in (message.invalid_tool_calls[0]["error"] or "")


def test_the_instruction_joins_an_existing_system_prompt() -> None:
    backend = ScriptedBackend([turn("r", "", call("magic_function", input=3))])
    model = ChatPIPO(backend=backend).bind_tools([magic_function], tool_choice="magic_function")
    model.invoke([SystemMessage("Be brief."), HumanMessage("go")])
    system = backend.requests[0].messages[0]
    assert system.content == "Be brief.\n\nIn this turn you must call the tool magic_function."


# ---- structured output ----


def test_structured_output_json_schema_parses_the_answer_text_after_a_re_ask() -> None:
    backend = ScriptedBackend([turn('{"setup": 1', "Answer: 3"), turn("a joke", f"```json\n{JOKE}\n```")])
    joke = ChatPIPO(backend=backend).with_structured_output(Joke).invoke("joke")
    assert joke == Joke(setup="Why?", punchline="Because.")
    assert '"required": ["setup", "punchline"]' in backend.requests[0].messages[0].content
    assert backend.requests[1].messages[-1].content.startswith("Your answer is not a JSON object")


def test_structured_output_methods_and_include_raw() -> None:
    model = model_over(
        turn("r", "", call("Joke", setup="a", punchline="b")),
        turn("r", JOKE),
        turn("r", "not json"),
        turn("r", "still not"),
        turn("r", "nor this"),
        max_retries=0,
    )
    assert model.with_structured_output(Joke, method="function_calling").invoke("x") == Joke(
        setup="a", punchline="b"
    )
    schema = Joke.model_json_schema()
    assert model.with_structured_output(schema, method="json_mode").invoke("x") == {
        "setup": "Why?",
        "punchline": "Because.",
    }
    out = model.with_structured_output(Joke, include_raw=True).invoke("x")
    assert out["parsed"] is None and out["parsing_error"] is not None and out["raw"].content == "not json"
    with pytest.raises(ValueError, match="unknown method"):
        model.with_structured_output(Joke, method="xml")  # type: ignore[arg-type]


def test_structured_output_streams_parsed_objects() -> None:
    chunks = list(model_over(turn("r", JOKE), chunk_size=4).with_structured_output(Joke).stream("x"))
    assert chunks and chunks[-1] == Joke(setup="Why?", punchline="Because.")


# ---- where the backend runs ----


@pytest.mark.anyio
async def test_async_calls_run_on_the_private_loop() -> None:
    backend = RecordingBackend([turn("r", "one"), turn("r", "two")], chunk_size=1)
    model = ChatPIPO(backend=backend)
    assert (await model.ainvoke("x")).content == "one"
    chunks = [chunk async for chunk in model.astream("x")]
    assert merged(chunks).text == "two"
    assert {thread.name for thread in backend.threads} == {"ChatPIPO RecordingBackend"}
    assert backend.entered == 1
    await model.aclose()
    assert backend.exited == 1


def test_sync_calls_work_inside_a_running_event_loop() -> None:
    model = model_over(turn("r", "from a worker"), turn("r", "from the loop"))

    async def main() -> tuple[str, str]:
        in_worker = await asyncio.to_thread(lambda: model.invoke("x").text)
        on_loop = model.invoke("x").text  # blocks this loop, but nests no other loop in it
        return in_worker, on_loop

    assert asyncio.run(main()) == ("from a worker", "from the loop")


def test_leaving_a_stream_early_closes_the_backend_stream() -> None:
    backend = RecordingBackend([turn("r", "a long answer " * 50)], chunk_size=1, chunk_delay=0.001)
    model = ChatPIPO(backend=backend)
    for _ in model.stream("x"):
        break
    deadline = threading.Event()
    for _ in range(200):
        if backend.closed_streams:
            break
        deadline.wait(0.01)
    assert backend.closed_streams == 1
    model.close()


def test_closing_cancels_calls_in_flight_then_stops_the_backend() -> None:
    backend = RecordingBackend([turn("r", "slow " * 200)], chunk_size=1, chunk_delay=0.01)
    model = ChatPIPO(backend=backend)
    chunks = model.stream("x")
    next(chunks)
    model.close()
    with pytest.raises(BackendError, match="cancelled"):
        list(chunks)
    assert (backend.closed_streams, backend.entered, backend.exited) == (1, 1, 1)


def test_timeout_bounds_a_call() -> None:
    backend = ScriptedBackend([turn("r", "slow " * 100)], chunk_size=1, chunk_delay=0.01)
    model = ChatPIPO(backend=backend, timeout=0.05)
    with pytest.raises(TimeoutError):
        model.invoke("x")


@pytest.mark.anyio
async def test_the_caller_loop_mode_uses_the_backend_where_the_caller_runs() -> None:
    backend = RecordingBackend([turn("r", "here"), turn("r", "streamed")])
    model = ChatPIPO(backend=backend, backend_loop="caller")
    assert (await model.ainvoke("x")).content == "here"
    assert merged([c async for c in model.astream("x")]).text == "streamed"
    assert backend.threads == [threading.current_thread()] * 2 and backend.entered == 0
    with pytest.raises(AgentUsageError, match="async calls only"):
        await anyio.to_thread.run_sync(model.invoke, "x")


def test_constructing_the_default_model_starts_nothing() -> None:
    before = threading.active_count()
    model = ChatPIPO(max_tokens=16)
    assert threading.active_count() == before and "pipo-default" not in _HOSTS
    assert model._get_ls_params(model="pipo-default-ar")["ls_model_name"] == "pipo-default-ar"


def test_a_blocking_call_from_the_private_loop_is_refused() -> None:
    class Reentrant(ChatBackend):
        model: ChatPIPO | None = None

        async def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
            assert self.model is not None
            self.model.invoke("again")  # on the loop thread that would have to answer it
            yield TextDelta(text="never")

    backend = Reentrant()
    model = backend.model = ChatPIPO(backend=backend)
    with pytest.raises(LoopThreadError, match="its own event loop"):
        model.invoke("x")
    model.close()


def test_a_backend_failure_reaches_the_caller() -> None:
    model = model_over(RuntimeError("engine on fire"), RuntimeError("engine on fire"))
    with pytest.raises(RuntimeError, match="engine on fire"):
        model.invoke("x")
    with pytest.raises(RuntimeError, match="engine on fire"):
        list(model.stream("x"))
