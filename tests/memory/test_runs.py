"""Runs, steps and tool invocations: the durable-step protocol, resume points and cancellation."""

from typing import Any

import pytest

from pipo_agent.memory import (
    InvalidMessageError,
    MemoryStore,
    NotFoundError,
    RunStatus,
    StepStatus,
    StoreMisuseError,
    StoreStateError,
    ToolStatus,
)
from tests.memory.conftest import assistant, result, user

pytestmark = pytest.mark.anyio

TWO_CALLS = assistant(
    "", ("s0-a", "calc", {"expr": "2*3"}), ("s0-b", "lookup", {"key": "milk"}), reasoning="r"
)
USAGE = {"prompt_tokens": 12, "completion_tokens": 7, "pipo": {"decode_steps": 5, "drafts_committed": 2}}


async def new_run(store: MemoryStore, **kwargs: object) -> tuple[str, str]:
    thread = await store.create_thread()
    await store.append_message(thread.id, user("question"))
    run = await store.start_run(thread.id, **kwargs)  # type: ignore[arg-type]
    return thread.id, run.id


async def test_a_step_commits_message_invocations_and_results_together(store: MemoryStore) -> None:
    thread_id, run_id = await new_run(store, task_type="arithmetic", config={"tau": 0.6})
    run = await store.get_run(run_id)
    assert (run.status, run.task_type, run.config) == (RunStatus.RUNNING, "arithmetic", {"tau": 0.6})
    assert run.finished_at is None
    step = await store.begin_step(run_id, TWO_CALLS)
    assert (step.index, step.status, step.message_seq) == (0, StepStatus.RUNNING, None)
    assert step.assistant_message == TWO_CALLS
    # The open step's message is not in the history yet.
    assert await store.load_history(thread_id) == [user("question")]

    pending = await store.record_tool_pending(step.id, "s0-a")
    assert (pending.status, pending.name, pending.result) == (ToolStatus.PENDING, "calc", None)
    assert pending.arguments == {"expr": "2*3"}
    assert await store.get_tool_result("s0-a") is None
    done = await store.record_tool_result(result("s0-a", "6"))
    assert done.status is ToolStatus.COMPLETED and done.finished_at is not None
    assert await store.get_tool_result("s0-a") == result("s0-a", "6")

    # The second call's result arrives with the commit itself (never recorded pending).
    lookup = result("s0-b", "no such key", name="lookup", is_error=True)
    committed = await store.complete_step(
        step.id, tool_results=[lookup], usage=USAGE, timings={"model_s": 0.5}
    )
    assert committed.status is StepStatus.COMPLETED and committed.message_seq == 2
    assert (committed.usage, committed.timings) == (USAGE, {"model_s": 0.5})
    assert committed.assistant_message == TWO_CALLS
    assert await store.load_history(thread_id) == [user("question"), TWO_CALLS, result("s0-a", "6"), lookup]
    failed = await store.get_tool_invocation("s0-b")
    assert failed is not None and failed.status is ToolStatus.FAILED and failed.result == lookup

    final = assistant("6 and no milk")
    last = await store.begin_step(run_id, final)
    await store.complete_step(last.id)
    finished = await store.set_run_status(run_id, RunStatus.COMPLETED)
    assert finished.finished_at is not None
    assert [s.index for s in await store.list_steps(run_id)] == [0, 1]
    assert (await store.load_history(thread_id))[-1] == final
    assert [r.id for r in await store.list_runs(thread_id)] == [run_id]


async def test_pending_is_idempotent_and_results_cannot_change(store: MemoryStore) -> None:
    _, run_id = await new_run(store)
    step = await store.begin_step(run_id, TWO_CALLS)
    first = await store.record_tool_pending(step.id, "s0-a")
    assert await store.record_tool_pending(step.id, "s0-a") == first
    await store.record_tool_result(result("s0-a", "6"))
    await store.record_tool_result(result("s0-a", "6"))  # the same result again is fine
    with pytest.raises(StoreStateError, match="different result"):
        await store.record_tool_result(result("s0-a", "7"))
    with pytest.raises(StoreStateError, match="different result"):
        await store.complete_step(step.id, tool_results=[result("s0-a", "7"), result("s0-b", "x")])
    again = await store.record_tool_pending(step.id, "s0-a")
    assert again.status is ToolStatus.COMPLETED  # a finished call is reported, never reset
    with pytest.raises(StoreMisuseError, match="no tool call"):
        await store.record_tool_pending(step.id, "unknown")
    with pytest.raises(NotFoundError, match="pending"):
        await store.record_tool_result(result("never-recorded", "x"))
    with pytest.raises(NotFoundError):
        await store.record_tool_pending(999_999, "s0-a")


async def test_a_step_cannot_commit_with_an_unanswered_call(store: MemoryStore) -> None:
    thread_id, run_id = await new_run(store)
    step = await store.begin_step(run_id, TWO_CALLS)
    await store.record_tool_pending(step.id, "s0-a")
    await store.record_tool_result(result("s0-a", "6"))
    with pytest.raises(StoreStateError, match="s0-b"):
        await store.complete_step(step.id)
    with pytest.raises(StoreMisuseError, match="not a call"):
        await store.complete_step(step.id, tool_results=[result("other", "x")])
    # Nothing from the failed commits is visible.
    assert await store.load_history(thread_id) == [user("question")]
    assert (await store.resume_point(run_id)).open_step is not None


async def test_step_rules(store: MemoryStore) -> None:
    _, run_id = await new_run(store)
    with pytest.raises(InvalidMessageError, match="assistant"):
        await store.begin_step(run_id, user("not the model"))
    step = await store.begin_step(run_id, assistant("", ("x1", "calc", {})))
    with pytest.raises(StoreStateError, match="open step"):
        await store.begin_step(run_id, assistant("again"))
    with pytest.raises(StoreStateError, match="open step"):
        await store.set_run_status(run_id, RunStatus.COMPLETED)
    await store.complete_step(step.id, tool_results=[result("x1", "ok")])
    with pytest.raises(StoreStateError, match="only a running step"):
        await store.complete_step(step.id)
    with pytest.raises(StoreStateError, match="used before"):
        await store.begin_step(run_id, assistant("", ("x1", "calc", {})))
    _, other_run = await new_run(store)
    with pytest.raises(StoreStateError, match="used before"):
        await store.begin_step(other_run, assistant("", ("x1", "calc", {})))
    with pytest.raises(NotFoundError):
        await store.begin_step("no-such-run", assistant("x"))
    with pytest.raises(NotFoundError):
        await store.start_run("no-such-thread")


async def test_arguments_are_checked_before_the_database(store: MemoryStore) -> None:
    thread_id, run_id = await new_run(store)
    with pytest.raises(StoreMisuseError, match="unknown run status"):
        await store.set_run_status(run_id, "paused")  # type: ignore[arg-type]
    with pytest.raises(StoreMisuseError, match="id must be"):
        await store.start_run(thread_id, run_id="x" * 65)
    with pytest.raises(StoreMisuseError, match="task_type"):
        await store.start_run(thread_id, task_type="")
    with pytest.raises(StoreMisuseError, match="config is not JSON"):
        await store.start_run(thread_id, config={"f": object()})
    step = await store.begin_step(run_id, assistant("a"))
    with pytest.raises(StoreMisuseError, match="usage is not JSON"):
        await store.complete_step(step.id, usage={"tokens_per_step": float("inf")})
    with pytest.raises(StoreMisuseError, match="limit"):
        await store.list_threads(limit=-1)


async def test_run_status_transitions(store: MemoryStore) -> None:
    _, run_id = await new_run(store)
    step = await store.begin_step(run_id, TWO_CALLS)
    interrupted = await store.set_run_status(run_id, RunStatus.INTERRUPTED)
    assert interrupted.finished_at is not None
    with pytest.raises(StoreStateError, match="interrupted"):
        await store.begin_step(run_id, assistant("x"))
    # Interrupting keeps the open step for the resume; running again clears finished_at.
    assert (await store.resume_point(run_id)).open_step == step
    resumed = await store.set_run_status(run_id, RunStatus.RUNNING)
    assert resumed.status is RunStatus.RUNNING and resumed.finished_at is None
    failed = await store.set_run_status(run_id, RunStatus.FAILED, error="model crashed")
    assert failed.error == "model crashed"
    assert (await store.list_steps(run_id))[0].status is StepStatus.FAILED
    for status in RunStatus:
        with pytest.raises(StoreStateError, match="already failed"):
            await store.set_run_status(run_id, status)


async def test_resume_point_tells_what_to_reuse_and_what_is_left(store: MemoryStore) -> None:
    _, run_id = await new_run(store)
    empty = await store.resume_point(run_id)
    assert (empty.last_completed_step, empty.open_step, empty.next_step_index) == (None, None, 0)

    s0 = await store.begin_step(run_id, assistant("", ("a", "calc", {})))
    await store.complete_step(s0.id, tool_results=[result("a", "1")])
    three = assistant("", ("b", "calc", {"n": 1}), ("c", "calc", {"n": 2}), ("d", "calc", {"n": 3}))
    s1 = await store.begin_step(run_id, three)
    await store.record_tool_pending(s1.id, "b")
    await store.record_tool_result(result("b", "2"))
    await store.record_tool_pending(s1.id, "c")  # crash here: c may or may not have run

    point = await store.resume_point(run_id)
    assert point.last_completed_step is not None and point.last_completed_step.id == s0.id
    assert point.open_step is not None and point.open_step.assistant_message == three
    assert [i.tool_call_id for i in point.finished] == ["b"] and point.finished[0].result == result("b", "2")
    assert [i.tool_call_id for i in point.pending] == ["c"]
    assert [c["id"] for c in point.not_started] == ["d"]
    assert point.next_step_index == 2
    assert point.run.status is RunStatus.RUNNING


async def test_cancelled_turn_keeps_answered_calls_and_no_orphans(store: MemoryStore) -> None:
    thread_id, run_id = await new_run(store)
    step = await store.begin_step(run_id, TWO_CALLS)
    await store.record_tool_pending(step.id, "s0-a")
    await store.record_tool_pending(step.id, "s0-b")
    await store.record_tool_result(result("s0-a", "6"))
    saved = await store.save_partial_turn(run_id, usage={"completion_tokens": 3})
    assert saved is not None and saved.status is StepStatus.CANCELLED
    assert saved.usage == {"completion_tokens": 3}
    run = await store.get_run(run_id)
    assert run.status is RunStatus.CANCELLED and run.finished_at is not None
    kept_call = {**TWO_CALLS, "tool_calls": [TWO_CALLS["tool_calls"][0]]}  # type: ignore[index]
    assert await store.load_history(thread_id) == [user("question"), kept_call, result("s0-a", "6")]
    # The unanswered call stays pending; a result arriving late is still kept.
    assert (await store.get_tool_invocation("s0-b")).status is ToolStatus.PENDING  # type: ignore[union-attr]
    await store.record_tool_result(result("s0-b", "late", name="lookup"))
    assert await store.get_tool_result("s0-b") == result("s0-b", "late", name="lookup")
    with pytest.raises(StoreStateError, match="already cancelled"):
        await store.save_partial_turn(run_id, assistant("more"))


async def test_cancel_during_generation_saves_the_partial_text(store: MemoryStore) -> None:
    thread_id, run_id = await new_run(store)
    partial = assistant("The answer is", reasoning="first multiply")
    saved = await store.save_partial_turn(run_id, partial, timings={"model_s": 1.5})
    assert saved is not None and saved.index == 0 and saved.assistant_message == partial
    assert await store.load_history(thread_id) == [user("question"), partial]

    _, quiet_run = await new_run(store)
    assert await store.save_partial_turn(quiet_run) is None
    assert (await store.get_run(quiet_run)).status is RunStatus.CANCELLED
    # A partial turn that produced nothing keeps the step but adds nothing to the history.
    empty_thread, empty_run = await new_run(store)
    step = await store.save_partial_turn(empty_run, assistant("", ("z", "calc", {})))
    assert step is not None and step.message_seq is None
    assert await store.load_history(empty_thread) == [user("question")]


async def test_compaction_keeps_steps_of_removed_messages(store: MemoryStore) -> None:
    thread_id, run_id = await new_run(store)
    step = await store.begin_step(run_id, assistant("first"))
    await store.complete_step(step.id)
    await store.append_messages(thread_id, [user("q2"), assistant("second")])

    async def summary(messages: list[dict[str, Any]]) -> dict[str, Any]:
        return {"kind": "user", "content": "earlier: first"}

    assert await store.compact_history(thread_id, summary, keep_last_n=1) is not None
    (kept,) = await store.list_steps(run_id)
    assert kept.status is StepStatus.COMPLETED and kept.assistant_message is None and kept.message_seq is None
    await store.delete_thread(thread_id)
    with pytest.raises(NotFoundError):
        await store.get_run(run_id)
    assert await store.get_tool_invocation("anything") is None


async def test_invalid_calls_may_be_answered_but_never_become_invocations(store: MemoryStore) -> None:
    thread_id, run_id = await new_run(store)
    message = {
        **assistant("", ("ok-1", "calc", {})),
        "invalid_tool_calls": [{"id": "bad-1", "raw": "<tool_call>{", "error": "not JSON", "name": None}],
    }
    step = await store.begin_step(run_id, message)
    assert [c["id"] for c in (await store.resume_point(run_id)).not_started] == ["ok-1"]
    answer = {"kind": "tool", "tool_call_id": "bad-1", "name": None, "content": "bad call", "is_error": True}
    await store.complete_step(step.id, tool_results=[answer, result("ok-1", "3")])
    assert await store.load_history(thread_id) == [user("question"), message, result("ok-1", "3"), answer]
    assert await store.get_tool_invocation("bad-1") is None
