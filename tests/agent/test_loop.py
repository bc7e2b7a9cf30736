"""The agent loop on the scripted test backend, on asyncio and trio: tools, limits, timeouts, hooks, streams."""

import time
from typing import Any

import anyio
import pytest

from pipo_agent.agent import Agent, AgentConfig
from pipo_agent.backend import SamplingSettings
from pipo_agent.errors import AgentUsageError, BackendError
from pipo_agent.messages import (
    AssistantMessage,
    FinishReason,
    ToolCall,
    ToolResultMessage,
    Usage,
    UserMessage,
)
from pipo_agent.run_events import RunEvent, StopReason
from pipo_agent.testing import ScriptedBackend, ScriptedTurn
from pipo_agent.toolset import tool

from .conftest import call, turn

pytestmark = pytest.mark.anyio

ANSWER = turn("done", "Answer: 42")


def results(messages: list[Any]) -> list[ToolResultMessage]:
    return [m for m in messages if isinstance(m, ToolResultMessage)]


@tool
def add(a: int, b: int) -> int:
    """Add two numbers.

    Args:
        a: The first.
        b: The second.
    """
    return a + b


async def test_an_answer_without_tools_ends_the_run() -> None:
    backend = ScriptedBackend([ANSWER])
    result = await Agent(backend, system_prompt="be brief").run("question?")
    assert result.stop_reason is StopReason.ANSWERED and result.answered
    assert result.output == "Answer: 42" and result.steps == 1
    assert [m.kind for m in result.messages] == ["system", "user", "assistant"]
    assert backend.requests[0].messages[1] == UserMessage(content="question?")
    assert backend.requests[0].sampling.tau == 0.9  # the policy's initial tau, without a store to adapt it
    plain = ScriptedBackend([ANSWER])
    await Agent(plain, thresholds=None).run("question?")
    assert plain.requests[0].sampling.tau is None  # no policy: the backend's default


async def test_misuse_is_refused_before_anything_runs() -> None:
    backend = ScriptedBackend([ANSWER])
    with pytest.raises(AgentUsageError, match="thread_id needs memory"):
        await Agent(backend).run("t", thread_id="x")
    async with Agent(backend).stream("t") as run:
        with pytest.raises(AgentUsageError, match="has not ended"):
            _ = run.result
        with pytest.raises(AgentUsageError, match="entered once"):
            await run.__aenter__()
        _ = [event async for event in run]
    with pytest.raises(AgentUsageError, match="inside `async with"):
        aiter(Agent(backend).stream("t"))
    assert backend.requests and len(backend.requests) == 1


async def test_parallel_calls_answer_in_call_order() -> None:
    finished: list[str] = []

    @tool
    async def wait(label: str, seconds: float) -> str:
        """Sleep, then return the label.

        Args:
            label: Returned.
            seconds: How long.
        """
        await anyio.sleep(seconds)
        finished.append(label)
        return label

    calls = [call("wait", label="slow", seconds=0.2), call("wait", label="fast", seconds=0.0)]
    calls.append(call("wait", label="mid", seconds=0.1))
    backend = ScriptedBackend([turn("go", "", *calls), ANSWER])
    events: list[RunEvent] = []
    result = await Agent(backend, tools=[wait]).run("t", hooks=[events.append])
    assert finished == ["fast", "mid", "slow"]  # they ran together
    assert [r.content for r in results(result.messages)] == ["slow", "fast", "mid"]  # call order
    reported = [e.result.content for e in events if e.kind == "tool_result"]
    assert reported == ["fast", "mid", "slow"]  # events as they finish
    assert [r.tool_call_id for r in results(backend.requests[1].messages)] == ["call_1", "call_2", "call_3"]


async def test_the_concurrency_limit_is_respected() -> None:
    running, peak = 0, 0

    @tool
    async def work(n: int) -> int:
        """Work.

        Args:
            n: Echoed.
        """
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await anyio.sleep(0.02)
        running -= 1
        return n

    backend = ScriptedBackend([turn("go", "", *[call("work", n=i) for i in range(6)]), ANSWER])
    result = await Agent(backend, tools=[work], config=AgentConfig(tool_concurrency=2)).run("t")
    assert peak == 2
    assert [r.content for r in results(result.messages)] == [str(i) for i in range(6)]


async def test_a_run_alone_tool_never_runs_beside_another() -> None:
    timeline: list[tuple[str, str]] = []

    @tool
    async def step(label: str) -> str:
        """Record.

        Args:
            label: Recorded.
        """
        timeline.append(("start", label))
        await anyio.sleep(0.02)
        timeline.append(("end", label))
        return label

    @tool(run_alone=True)
    async def barrier(label: str) -> str:
        """Record alone.

        Args:
            label: Recorded.
        """
        timeline.append(("start", label))
        await anyio.sleep(0.02)
        timeline.append(("end", label))
        return label

    calls = [call("step", label="a"), call("step", label="b"), call("barrier", label="X")]
    calls += [call("step", label="c"), call("step", label="d")]
    backend = ScriptedBackend([turn("go", "", *calls), ANSWER])
    result = await Agent(backend, tools=[step, barrier]).run("t")
    x_start, x_end = timeline.index(("start", "X")), timeline.index(("end", "X"))
    assert x_end == x_start + 1  # nothing started or ended while X ran
    assert {label for _, label in timeline[:x_start]} == {"a", "b"}
    assert [r.content for r in results(result.messages)] == ["a", "b", "X", "c", "d"]


async def test_a_hanging_tool_times_out_and_a_raising_tool_reports_its_error() -> None:
    async def hang() -> str:
        """Never returns."""
        await anyio.sleep(60)
        return "never"

    def explode() -> str:
        """Raises."""
        raise RuntimeError("kaboom")

    backend = ScriptedBackend([turn("go", "", call("hang"), call("explode"), call("add", a=1, b=2)), ANSWER])
    config = AgentConfig(tool_timeout_s=0.05)
    started = time.perf_counter()
    result = await Agent(backend, tools=[hang, explode, add], config=config).run("t")
    assert time.perf_counter() - started < 5
    hung, exploded, added = results(result.messages)
    assert hung.is_error and "did not finish within 0.05 s" in hung.content
    assert exploded.is_error and "RuntimeError: kaboom" in exploded.content
    assert not added.is_error and added.content == "3"
    assert result.stop_reason is StopReason.ANSWERED and result.tool_mistakes == 0


async def test_model_mistakes_go_back_to_the_model_within_the_retry_budget() -> None:
    malformed = "<tool_call>\n{not json\n</tool_call>"
    script = [
        turn("1", "", call("add", a="x", b=2)),  # invalid arguments
        turn("2", "", call("nope", q=1)),  # unknown tool
        turn("3", "", malformed),  # not a well-formed call
        turn("4", "", call("add", a=1, b=2)),
        ANSWER,
    ]
    backend = ScriptedBackend(script)
    result = await Agent(backend, tools=[add], config=AgentConfig(max_tool_retries=3)).run("t")
    assert result.stop_reason is StopReason.ANSWERED and result.tool_mistakes == 3
    errors = [r.content for r in results(result.messages)]
    assert "invalid arguments for add" in errors[0]
    assert "unknown tool 'nope'; available tools: add" in errors[1]
    assert "not valid JSON" in errors[2] and errors[3] == "3"


async def test_past_the_retry_budget_the_run_stops_without_running_the_valid_calls() -> None:
    ran: list[int] = []

    def record(n: int) -> int:
        """Record.

        Args:
            n: Recorded.
        """
        ran.append(n)
        return n

    script = [turn("1", "", call("nope")), turn("2", "", call("nope"), call("record", n=7))]
    result = await Agent(ScriptedBackend(script), tools=[record], config=AgentConfig(max_tool_retries=1)).run(
        "t"
    )
    assert result.stop_reason is StopReason.TOOL_RETRIES and "max_tool_retries is 1" in result.detail
    assert ran == []
    last = results(result.messages)[-2:]
    assert "unknown tool" in last[0].content and last[1].content.startswith("Error: not run:")


async def test_the_step_cap_stops_a_run_that_keeps_calling_tools() -> None:
    ran: list[int] = []

    def record(n: int) -> int:
        """Record.

        Args:
            n: Recorded.
        """
        ran.append(n)
        return n

    script = [turn(str(i), "", call("record", n=i)) for i in range(5)]
    backend = ScriptedBackend(script)
    result = await Agent(backend, tools=[record], config=AgentConfig(max_steps=3)).run("t")
    assert result.stop_reason is StopReason.MAX_STEPS and result.steps == 3
    assert ran == [0, 1]  # the last step's call has no next turn to read it: not run
    assert "not run: the step cap of 3" in results(result.messages)[-1].content
    assert len(backend.requests) == 3


async def test_the_token_budget_counts_reasoning_tokens_and_caps_max_tokens() -> None:
    thinking = Usage(prompt_tokens=10, completion_tokens=60, reasoning_tokens=55)
    script = [
        ScriptedTurn(turn("long thought", "", call("add", a=1, b=1)), usage=thinking),
        ScriptedTurn(turn("more thought", "", call("add", a=2, b=2)), usage=thinking),
        ANSWER,
    ]
    backend = ScriptedBackend(script)
    config = AgentConfig(token_budget=100, sampling=SamplingSettings(max_tokens=80))
    result = await Agent(backend, tools=[add], config=config).run("t")
    assert result.stop_reason is StopReason.TOKEN_BUDGET and result.usage.completion_tokens == 120
    assert result.usage.reasoning_tokens == 110
    assert [r.sampling.max_tokens for r in backend.requests] == [80, 40]


async def test_the_wall_timeout_stops_a_slow_run_and_keeps_the_partial_turn() -> None:
    backend = ScriptedBackend([turn("x" * 300, "never")], chunk_delay=0.01)
    started = time.perf_counter()
    result = await Agent(backend, config=AgentConfig(wall_timeout_s=0.2)).run("t")
    assert time.perf_counter() - started < 2
    assert result.stop_reason is StopReason.WALL_TIMEOUT
    partial = result.messages[-1]
    assert isinstance(partial, AssistantMessage) and partial.reasoning and partial.reasoning.startswith("xxx")
    assert partial.finish_reason is None and partial.content == ""


async def test_the_idle_timeout_fires_on_silence_and_is_reset_by_every_event() -> None:
    silent = ScriptedBackend([ANSWER], chunk_delay=0.5)
    result = await Agent(silent, config=AgentConfig(idle_timeout_s=0.1)).run("t")
    assert result.stop_reason is StopReason.IDLE_TIMEOUT

    steady = ScriptedBackend([turn("y" * 60, "Answer: 1")], chunk_size=3, chunk_delay=0.02)  # ~0.4 s in all
    result = await Agent(steady, config=AgentConfig(idle_timeout_s=0.15)).run("t")
    assert result.stop_reason is StopReason.ANSWERED


async def test_a_turn_cut_off_by_max_tokens_is_truncated() -> None:
    backend = ScriptedBackend([ScriptedTurn(turn("r", "Answer: 4"), finish_reason=FinishReason.LENGTH)])
    result = await Agent(backend).run("t")
    assert result.stop_reason is StopReason.TRUNCATED


async def test_a_backend_error_fails_the_run() -> None:
    backend = ScriptedBackend([turn("go", "", call("add", a=1, b=1)), BackendError("connection lost")])
    with pytest.raises(BackendError, match="connection lost"):
        await Agent(backend, tools=[add]).run("t")


async def test_hooks_see_every_event_in_order() -> None:
    seen_sync: list[RunEvent] = []
    seen_async: list[str] = []

    async def observe(event: RunEvent) -> None:
        await anyio.sleep(0)
        seen_async.append(event.kind)

    backend = ScriptedBackend([turn("think", "hi", call("add", a=1, b=2)), turn("ok", "Answer: 3")])
    agent = Agent(backend, tools=[add], hooks=[seen_sync.append])
    async with agent.stream("t", hooks=[observe]) as run:
        streamed = [event async for event in run]
    assert streamed == seen_sync and [e.kind for e in seen_sync] == seen_async
    kinds = [e.kind for e in streamed if e.kind not in ("reasoning_delta", "text_delta")]
    assert kinds == [
        "run_start",
        *["step_start", "tool_call", "usage", "tool_result", "step_end"],
        *["step_start", "usage", "step_end"],
        "run_end",
    ]
    text = "".join(e.text for e in streamed if e.kind == "text_delta" and e.step == 0)
    assert text == "hi" and run.result.output == "Answer: 3"


async def test_cancelling_the_stream_ends_the_run_with_its_partial_turn() -> None:
    backend = ScriptedBackend([turn("z" * 400, "never")], chunk_delay=0.01)
    async with Agent(backend).stream("t") as run:
        async for event in run:
            if event.kind == "reasoning_delta":
                run.cancel()
    assert run.result.stop_reason is StopReason.CANCELLED
    assert isinstance(run.result.messages[-1], AssistantMessage)


async def test_leaving_the_stream_early_stops_the_run_and_its_tools() -> None:
    started, stopped = anyio.Event(), anyio.Event()

    async def slow() -> str:
        """Slow."""
        started.set()
        try:
            await anyio.sleep(30)
        finally:
            stopped.set()
        return "never"

    backend = ScriptedBackend([turn("go", "", call("slow")), ANSWER])
    with anyio.fail_after(5):
        async with Agent(backend, tools=[slow]).stream("t") as run:
            async for event in run:
                if event.kind == "usage":
                    await started.wait()
                    break
        await stopped.wait()
    assert run.result.stop_reason is StopReason.CANCELLED


async def test_history_without_memory_and_seeds_per_step() -> None:
    earlier = [UserMessage(content="my name is Ada"), AssistantMessage(content="Hi Ada")]
    backend = ScriptedBackend([turn("go", "", call("add", a=1, b=1)), ANSWER])
    config = AgentConfig(sampling=SamplingSettings(seed=7, tau=0.5))
    result = await Agent(backend, tools=[add], config=config).run("what is my name?", history=earlier)
    assert result.messages[:3] == [*earlier, UserMessage(content="what is my name?")]
    assert [r.sampling.seed for r in backend.requests] == [7, 8]
    assert [r.sampling.tau for r in backend.requests] == [0.5, 0.5] and result.tau == 0.5


async def test_compaction_without_memory_keeps_calls_with_their_results() -> None:
    script = [turn(str(i), "", call("add", a=i, b=i)) for i in range(4)] + [ANSWER]
    backend = ScriptedBackend(script)
    config = AgentConfig(compact_after_messages=5, compact_keep_last=2)
    result = await Agent(backend, tools=[add], config=config).run("sum things")
    assert result.stop_reason is StopReason.ANSWERED
    for request in backend.requests:
        messages = request.messages
        calls = {c.id for m in messages if isinstance(m, AssistantMessage) for c in m.tool_calls}
        assert calls == {r.tool_call_id for r in results(messages)}
    last = backend.requests[-1].messages
    assert isinstance(last[0], UserMessage) and last[0].content.startswith(
        "[Summary of the earlier conversation]"
    )
    assert "sum things" in last[0].content and len(last) < 2 + 2 * 4


def test_agent_config_rejects_unknown_keys_and_bad_compaction() -> None:
    with pytest.raises(ValueError, match="max_turns"):
        AgentConfig(max_turns=3)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="compact_keep_last"):
        AgentConfig(compact_after_messages=4, compact_keep_last=4)
    with pytest.raises(ValueError, match="nope"):
        AgentConfig.model_validate({"sampling": {"nope": 1}})


def test_tools_given_as_functions_get_the_default_timeout() -> None:
    def plain(x: int) -> int:
        """Echo.

        Args:
            x: Echoed.
        """
        return x

    agent = Agent(ScriptedBackend([]), tools=[plain, add], config=AgentConfig(tool_timeout_s=3))
    assert agent.toolset["plain"].timeout == 3 and agent.toolset["add"].timeout == add.timeout


async def test_a_tool_call_is_reported_with_its_arguments() -> None:
    events: list[RunEvent] = []
    backend = ScriptedBackend([turn("go", "", call("add", a=2, b=3)), ANSWER])
    await Agent(backend, tools=[add]).run("t", hooks=[events.append])
    (called,) = [e for e in events if e.kind == "tool_call"]
    assert called.call == ToolCall(id="call_1", name="add", arguments={"a": 2, "b": 3})
