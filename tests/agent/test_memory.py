"""The agent with memory, on a real SQLite file and a real PostgreSQL, on asyncio (MemoryStore) and trio
(ThreadedMemoryStore): runs and steps committed, partial turns kept on cancel, resume, threads, compaction."""

from pathlib import Path
from typing import Any

import anyio
import pytest

from pipo_agent.agent import OUTCOME_UNKNOWN, Agent, AgentConfig
from pipo_agent.errors import AgentUsageError, BackendError
from pipo_agent.memory import MemoryStore, RunStatus, StepStatus, ToolStatus, safe_cuts
from pipo_agent.messages import AssistantMessage, ToolCall, UserMessage, dump_message, load_history
from pipo_agent.run_events import RunEvent, StopReason
from pipo_agent.testing import ScriptedBackend
from pipo_agent.toolset import tool

from .conftest import call, on_store, open_memory, turn

pytestmark = pytest.mark.anyio

ANSWER = turn("done", "Answer: 42")


def pairs_complete(history: list[dict[str, Any]]) -> bool:
    """Every tool call has its result and every result its call."""
    calls = {c["id"] for m in history for c in m.get("tool_calls", [])}
    return calls == {m["tool_call_id"] for m in history if m["kind"] in ("tool", "tool_result")}


@tool
def add(a: int, b: int) -> int:
    """Add.

    Args:
        a: The first.
        b: The second.
    """
    return a + b


async def test_a_run_is_committed_step_by_step(db_url: Any) -> None:
    backend = ScriptedBackend([turn("go", "", call("add", a=1, b=2), call("add", a=3, b=4)), ANSWER])
    async with open_memory(db_url) as memory:
        agent = Agent(
            backend, tools=[add], system_prompt="sys", memory=memory, config=AgentConfig(task_type="math")
        )
        result = await agent.run("add things")
        assert result.run_id is not None and result.thread_id is not None
        run = await on_store(memory, lambda s: s.get_run(result.run_id))
        steps = await on_store(memory, lambda s: s.list_steps(result.run_id))
        history = await on_store(memory, lambda s: s.load_history(result.thread_id))
        invocations = [
            await on_store(memory, lambda s, i=i: s.get_tool_invocation(i)) for i in ("call_1", "call_2")
        ]
        profile = await on_store(memory, lambda s: s.get_task_profile("math"))
    assert run.status is RunStatus.COMPLETED and run.task_type == "math" and run.config["tau"] == 0.9
    assert [s.status for s in steps] == [StepStatus.COMPLETED] * 2
    assert steps[0].usage["completion_tokens"] > 0 and "tools_s" in steps[0].timings
    assert load_history(history) == result.messages[1:]  # the system prompt is configuration, not history
    assert [i.status for i in invocations] == [ToolStatus.COMPLETED] * 2
    assert profile.successes == 1 and profile.tau < 0.9


async def test_a_second_run_continues_the_thread(tmp_path: Path) -> None:
    backend = ScriptedBackend([turn("a", "Hi Ada"), turn("b", "Answer: Ada")])
    async with open_memory(tmp_path / "m.db") as memory:
        agent = Agent(backend, memory=memory)
        first = await agent.run("my name is Ada")
        second = await agent.run("what is my name?", thread_id=first.thread_id)
        runs = await on_store(memory, lambda s: s.list_runs(first.thread_id))
    assert [m.kind for m in backend.requests[1].messages] == ["user", "assistant", "user"]
    assert second.thread_id == first.thread_id and len(runs) == 2


async def test_cancel_during_generation_keeps_the_partial_turn(tmp_path: Path) -> None:
    backend = ScriptedBackend([turn("w" * 500, "never")], chunk_delay=0.01)
    events: list[RunEvent] = []
    async with open_memory(tmp_path / "m.db") as memory:
        with anyio.move_on_after(0.3):
            await Agent(backend, memory=memory).run("t", hooks=[events.append])
        run_id = events[0].run_id  # type: ignore[union-attr]
        run = await on_store(memory, lambda s: s.get_run(run_id))
        history = load_history(await on_store(memory, lambda s: s.load_history(run.thread_id)))
    assert run.status is RunStatus.CANCELLED
    partial = history[-1]
    assert isinstance(partial, AssistantMessage) and partial.reasoning and set(partial.reasoning) == {"w"}
    streamed = "".join(e.text for e in events if e.kind == "reasoning_delta")
    assert streamed.startswith(partial.reasoning)


async def test_cancel_during_tools_keeps_finished_results_and_drops_unanswered_calls(tmp_path: Path) -> None:
    done = anyio.Event()

    async def quick() -> str:
        """Quick."""
        done.set()
        return "quick done"

    async def slow() -> str:
        """Slow."""
        await anyio.sleep(30)
        return "never"

    backend = ScriptedBackend([turn("go", "", call("quick"), call("slow")), ANSWER])
    async with open_memory(tmp_path / "m.db") as memory:
        agent = Agent(backend, tools=[quick, slow], memory=memory)
        async with anyio.create_task_group() as group:

            async def run() -> None:
                await agent.run("t")

            group.start_soon(run)
            await done.wait()
            await anyio.sleep(0.1)
            group.cancel_scope.cancel()
        thread = (await on_store(memory, lambda s: s.list_threads()))[0]
        history = load_history(await on_store(memory, lambda s: s.load_history(thread.id)))
        slow_call = await on_store(memory, lambda s: s.get_tool_invocation("call_2"))
    assert [m.kind for m in history] == ["user", "assistant", "tool"]
    assert isinstance(history[1], AssistantMessage) and [c.name for c in history[1].tool_calls] == ["quick"]
    assert history[2].content == "quick done"  # type: ignore[union-attr]
    assert slow_call is not None and slow_call.status is ToolStatus.PENDING  # its outcome stays unknown


async def test_resume_reuses_finished_results_and_never_reruns_a_pending_call(db_url: Any) -> None:
    ran: list[str] = []

    def effect(tag: str) -> str:
        """A side effect.

        Args:
            tag: Recorded.
        """
        ran.append(tag)
        return f"did {tag}"

    calls = [ToolCall(id=f"c{i}", name="effect", arguments={"tag": t}) for i, t in enumerate("abc")]
    crashed_turn = AssistantMessage(content="", reasoning="plan", tool_calls=calls)
    async with open_memory(db_url) as memory:
        # What a crash leaves: c0 finished, c1 pending (it may have run), c2 never started.
        async def crash(store: MemoryStore) -> str:
            thread = await store.create_thread()
            await store.append_message(thread.id, {"kind": "user", "content": "do a, b, c"})
            run = await store.start_run(thread.id, task_type="fx", config={"tau": 0.8, "tau_explicit": True})
            step = await store.begin_step(run.id, dump_message(crashed_turn))
            for call_id in ("c0", "c1"):
                await store.record_tool_pending(step.id, call_id)
            result = {"kind": "tool", "tool_call_id": "c0", "name": "effect", "content": "did a"}
            await store.record_tool_result(result)
            return run.id

        run_id = await on_store(memory, crash)
        events: list[RunEvent] = []
        backend = ScriptedBackend([ANSWER])
        result = await Agent(backend, tools=[effect], memory=memory).resume(run_id, hooks=[events.append])
        history = await on_store(memory, lambda s: s.load_history(result.thread_id))
        run = await on_store(memory, lambda s: s.get_run(run_id))
    assert ran == ["c"]  # a reused, b reported, c run
    assert result.stop_reason is StopReason.ANSWERED and result.steps == 2 and result.tau == 0.8
    outcomes = [m["content"] for m in history if m["kind"] == "tool"]
    assert outcomes == ["did a", f"Error: {OUTCOME_UNKNOWN}", "did c"]
    reported = [(e.result.tool_call_id, e.reused) for e in events if e.kind == "tool_result"]
    assert reported == [("c0", True), ("c1", False), ("c2", False)]
    assert events[0].kind == "run_start" and events[0].resumed  # type: ignore[union-attr]
    assert backend.requests[0].sampling.tau == 0.8 and pairs_complete(history)
    assert run.status is RunStatus.COMPLETED


async def test_resume_refuses_a_finished_run_and_needs_memory(tmp_path: Path) -> None:
    async with open_memory(tmp_path / "m.db") as memory:
        result = await Agent(ScriptedBackend([ANSWER]), memory=memory).run("t")
        with pytest.raises(AgentUsageError, match="already completed"):
            await Agent(ScriptedBackend([]), memory=memory).resume(result.run_id or "")
    with pytest.raises(AgentUsageError, match="needs an agent with memory"):
        await Agent(ScriptedBackend([])).resume("x")
    async with open_memory(tmp_path / "m.db") as memory:
        with pytest.raises(AgentUsageError, match="history= is for agents without memory"):
            await Agent(ScriptedBackend([]), memory=memory).run("t", history=[UserMessage(content="hi")])


async def test_a_backend_error_marks_the_run_failed(tmp_path: Path) -> None:
    backend = ScriptedBackend([BackendError("model crashed")])
    events: list[RunEvent] = []
    async with open_memory(tmp_path / "m.db") as memory:
        with pytest.raises(BackendError):
            await Agent(backend, memory=memory).run("t", hooks=[events.append])
        run = await on_store(memory, lambda s: s.get_run(events[0].run_id))  # type: ignore[union-attr]
    assert run.status is RunStatus.FAILED and "model crashed" in (run.error or "")


async def test_a_run_stopped_by_a_limit_is_marked_failed_with_the_reason(tmp_path: Path) -> None:
    backend = ScriptedBackend([turn("go", "", call("add", a=1, b=1))])
    async with open_memory(tmp_path / "m.db") as memory:
        result = await Agent(backend, tools=[add], memory=memory, config=AgentConfig(max_steps=1)).run("t")
        run = await on_store(memory, lambda s: s.get_run(result.run_id))
    assert result.stop_reason is StopReason.MAX_STEPS
    assert run.status is RunStatus.FAILED and run.error == result.detail


async def test_compaction_in_the_store_never_splits_a_call_from_its_result(tmp_path: Path) -> None:
    script = [turn(str(i), "", call("add", a=i, b=i)) for i in range(4)] + [ANSWER]
    backend = ScriptedBackend(script)
    config = AgentConfig(compact_after_messages=4, compact_keep_last=1)
    async with open_memory(tmp_path / "m.db") as memory:
        result = await Agent(backend, tools=[add], memory=memory, config=config).run("sum things")
        history = await on_store(memory, lambda s: s.load_history(result.thread_id))
    assert result.stop_reason is StopReason.ANSWERED
    assert history[0]["content"].startswith("[Summary of the earlier conversation]")
    assert pairs_complete(history) and safe_cuts(history)[1]  # the summary stands alone
    for request in backend.requests:
        assert pairs_complete([dump_message(m) for m in request.messages])
    assert load_history(history) == result.messages


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_a_plain_memory_store_on_trio_is_refused(tmp_path: Path) -> None:
    with anyio.from_thread.start_blocking_portal("asyncio") as portal:
        store = portal.call(lambda: MemoryStore.open(tmp_path / "m.db"))
        try:
            with pytest.raises(AgentUsageError, match="ThreadedMemoryStore"):
                await Agent(ScriptedBackend([ANSWER]), memory=store).run("t")
        finally:
            portal.call(store.close)
