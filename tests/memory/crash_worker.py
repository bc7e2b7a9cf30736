"""A scripted agent run that SIGKILLs itself at a named point; run by ``test_crash.py`` as a subprocess.

    python crash_worker.py DB SIDE_EFFECTS KILL_AT

Steps 0..STEPS-1 each call two tools in parallel (ids ``s{i}-c{j}``); step STEPS answers. A tool's side
effect is one line appended (and fsynced) to SIDE_EFFECTS, so the parent can count executions. The same
script resumes: it follows ``resume_point``, reuses finished results, and never re-runs a pending call,
whose outcome is unknown (its side effect may have happened). Prints each point it passes.
"""

import os
import signal
import sys
from pathlib import Path
from typing import Any

import anyio
from sqlalchemy import event
from sqlalchemy.orm import Session

from pipo_agent.memory import MemoryStore, NotFoundError, RunStatus

STEPS = 3
THREAD, RUN = "thread-1", "run-1"
UNKNOWN = "outcome unknown: the process died while this tool ran; not repeated"

kill_at = ""
committing = ""


def point(name: str) -> None:
    print(name, flush=True)
    if name == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)


def before_commit(session: Session) -> None:
    # Inside complete_step's transaction: every row is written, nothing committed yet.
    if committing:
        point(f"mid-commit:{committing}")


def step_message(index: int) -> dict[str, Any]:
    if index == STEPS:
        return {"kind": "assistant", "content": "all done", "reasoning": ""}
    calls = [{"id": f"s{index}-c{j}", "name": "append", "arguments": {"n": j}} for j in range(2)]
    return {"kind": "assistant", "content": "", "reasoning": f"step {index}", "tool_calls": calls}


def run_tool(side_effects: Path, call: dict[str, Any]) -> dict[str, Any]:
    fd = os.open(side_effects, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, f"{call['id']}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    return {
        "kind": "tool_result",
        "tool_call_id": call["id"],
        "name": "append",
        "content": f"ok {call['id']}",
    }


async def do_step(
    store: MemoryStore, side_effects: Path, step_id: int, index: int, message: dict[str, Any]
) -> None:
    global committing
    for call in message.get("tool_calls", []):
        invocation = await store.get_tool_invocation(call["id"])
        if invocation is not None and invocation.result is not None:
            continue  # finished before the crash: reuse, never re-run
        if invocation is not None:
            await store.record_tool_result(_unknown(call))
            continue
        await store.record_tool_pending(step_id, call["id"])
        point(f"pending:{call['id']}")
        done = run_tool(side_effects, call)
        point(f"executed:{call['id']}")
        await store.record_tool_result(done)
        point(f"result:{call['id']}")
    committing = str(index)
    await store.complete_step(step_id, usage={"completion_tokens": 10 + index})
    committing = ""
    point(f"step:{index}")


def _unknown(call: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": "tool_result",
        "tool_call_id": call["id"],
        "name": call["name"],
        "content": UNKNOWN,
        "is_error": True,
    }


async def start(store: MemoryStore) -> None:
    try:
        await store.get_thread(THREAD)
    except NotFoundError:
        await store.create_thread(thread_id=THREAD)
        await store.append_message(THREAD, {"kind": "user", "content": "do it"})
    await store.start_run(THREAD, run_id=RUN, task_type="crash-test")
    point("started")


async def main(db: Path, side_effects: Path) -> None:
    async with MemoryStore.open(db) as store:
        try:
            resume = await store.resume_point(RUN)
        except NotFoundError:
            await start(store)
            resume = await store.resume_point(RUN)
        if resume.run.status.is_final:
            return
        next_index = resume.next_step_index
        if resume.open_step is not None:
            open_step = resume.open_step
            assert open_step.assistant_message is not None
            await do_step(store, side_effects, open_step.id, open_step.index, open_step.assistant_message)
        for index in range(next_index, STEPS + 1):
            step = await store.begin_step(RUN, step_message(index))
            point(f"begin:{index}")
            await do_step(store, side_effects, step.id, index, step_message(index))
        await store.set_run_status(RUN, RunStatus.COMPLETED)
        point("completed")


if __name__ == "__main__":
    kill_at = sys.argv[3]
    event.listen(Session, "before_commit", before_commit)
    anyio.run(main, Path(sys.argv[1]), Path(sys.argv[2]))
