"""AgentRunnable: the pipo-agent Agent as a LangChain Runnable, over a scripted backend."""

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from operator import itemgetter
from pathlib import Path
from typing import Any

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

from pipo_agent.agent import Agent, AgentConfig
from pipo_agent.errors import AgentUsageError
from pipo_agent.langchain import AgentRunnable
from pipo_agent.memory import MemoryStore
from pipo_agent.testing import ScriptedBackend

from .conftest import RecordingBackend, call, turn


def add(a: int, b: int) -> int:
    """Add two integers.

    Args:
        a: The first.
        b: The second.
    """
    return a + b


def tool_run() -> list[str]:
    return [turn("add them", "", call("add", a=2, b=3)), turn("got 5", "Answer: 5")]


def test_invoke_returns_the_answer_and_the_run() -> None:
    runnable = AgentRunnable(Agent(ScriptedBackend(tool_run()), tools=[add]))
    out = runnable.invoke({"task": "What is 2+3?", "task_type": "arithmetic"})
    assert (out["output"], out["answered"], out["stop_reason"], out["steps"]) == (
        "Answer: 5",
        True,
        "answered",
        2,
    )
    assert out["task_type"] == "arithmetic" and out["run_id"] is None
    assert (
        out["usage_metadata"]["output_tokens"] > 0
        and "reasoning" in out["usage_metadata"]["output_token_details"]
    )
    kinds = [type(m) for m in out["messages"]]
    assert kinds == [HumanMessage, AIMessage, ToolMessage, AIMessage]
    assert out["messages"][2].content == "5"
    runnable.close()


def test_it_composes_and_reports_to_callbacks() -> None:
    class Recorder(BaseCallbackHandler):
        def __init__(self) -> None:
            self.events: list[str] = []

        def on_chain_start(self, serialized: Any, inputs: Any, **kwargs: Any) -> None:
            self.events.append("start")

        def on_chain_end(self, outputs: Any, **kwargs: Any) -> None:
            self.events.append("end")

    recorder = Recorder()
    chain = AgentRunnable(Agent(ScriptedBackend([turn("r", "hello")]))) | itemgetter("output")
    assert chain.invoke("hi", config={"callbacks": [recorder]}) == "hello"
    assert recorder.events[0] == "start" and recorder.events[-1] == "end"


def test_stream_yields_the_run_events() -> None:
    runnable = AgentRunnable(Agent(ScriptedBackend(tool_run()), tools=[add]))
    kinds = [event.kind for event in runnable.stream("What is 2+3?")]
    assert kinds[0] == "run_start" and kinds[-1] == "run_end"
    assert {"reasoning_delta", "tool_call", "tool_result", "text_delta"} <= set(kinds)


@pytest.mark.anyio
async def test_ainvoke_and_astream() -> None:
    backend = RecordingBackend([*tool_run(), *tool_run()])
    runnable = AgentRunnable(Agent(backend, tools=[add]))
    out = await runnable.ainvoke("What is 2+3?")
    assert out["output"] == "Answer: 5"
    events = [event async for event in runnable.astream("again")]
    assert events[-1].kind == "run_end" and events[-1].result.output == "Answer: 5"  # type: ignore[union-attr]
    assert {t.name for t in backend.threads} == {"AgentRunnable PipoAgent"} and backend.entered == 1
    await runnable.aclose()
    assert backend.exited == 1


@pytest.mark.anyio
async def test_the_caller_loop_mode_runs_the_agent_in_place() -> None:
    backend = RecordingBackend([turn("r", "here")])
    runnable = AgentRunnable(Agent(backend), backend_loop="caller")
    assert (await runnable.ainvoke("x"))["output"] == "here"
    assert backend.threads == [threading.current_thread()]
    with pytest.raises(AgentUsageError, match="async calls only"):
        runnable.invoke("x")


def test_a_factory_builds_an_agent_with_memory_on_the_private_loop(tmp_path: Path) -> None:
    backend = ScriptedBackend([turn("r", "Nice to meet you, Ada."), turn("r", "You are Ada.")])

    @asynccontextmanager
    async def make_agent() -> AsyncIterator[Agent]:
        async with MemoryStore.open(tmp_path / "memory.db") as store:
            yield Agent(backend, memory=store, config=AgentConfig(max_steps=2))

    runnable = AgentRunnable(make_agent)
    first = runnable.invoke("I am Ada.")
    second = runnable.invoke({"task": "Who am I?", "thread_id": first["thread_id"]})  # type: ignore[typeddict-item]
    assert first["run_id"] is not None and second["thread_id"] == first["thread_id"]
    assert "I am Ada." in [m.content for m in backend.requests[1].messages]
    runnable.close()


def test_bad_input_is_rejected() -> None:
    runnable = AgentRunnable(Agent(ScriptedBackend([])))
    with pytest.raises(ValueError, match="'task'"):
        runnable.invoke({"question": "x"})  # type: ignore[typeddict-item]
    with pytest.raises(TypeError, match="task string"):
        runnable.invoke(42)  # type: ignore[arg-type]
    with pytest.raises(AgentUsageError, match="thread_id needs memory"):
        runnable.invoke({"task": "x", "thread_id": "t"})
    with pytest.raises(AgentUsageError, match="not a factory"):
        AgentRunnable(lambda: None, backend_loop="caller")  # type: ignore[arg-type,return-value]
    runnable.close()
