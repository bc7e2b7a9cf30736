"""SIGKILL a process in the middle of a run, reopen its SQLite file, resume: nothing completed is lost, and
no tool side effect happens twice.

``crash_worker.py`` runs the same scripted agent each time (3 steps of two parallel tool calls, then an
answer); it kills itself at a named point (after a pending row, after the side effect, inside a step's
commit transaction, ...), or the parent kills it after some progress.
"""

import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from pipo_agent.memory import MemoryStore, RunStatus, StepStatus, ToolStatus, safe_cuts

pytestmark = pytest.mark.anyio

WORKER = Path(__file__).with_name("crash_worker.py")
RUN = "run-1"
STEPS = 3
ALL_CALLS = [f"s{i}-c{j}" for i in range(STEPS) for j in range(2)]


def run_worker(db: Path, effects: Path, kill_at: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(WORKER), str(db), str(effects), kill_at],
        capture_output=True,
        text=True,
        timeout=60,
    )


def executions(effects: Path) -> Counter[str]:
    return Counter(effects.read_text().split()) if effects.exists() else Counter()


async def check_consistent(db: Path, effects: Path) -> None:
    """What must hold after any crash: an intact file, well-formed history, every finished result kept."""
    with sqlite3.connect(db) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    ran = executions(effects)
    assert all(n == 1 for n in ran.values()), ran
    async with MemoryStore.open(db) as store:
        history = await store.load_history("thread-1")
        assert all(safe_cuts(history)[-1:]) and _pairs_complete(history)
        for call_id in ALL_CALLS:
            invocation = await store.get_tool_invocation(call_id)
            if invocation is not None and invocation.status is ToolStatus.COMPLETED:
                assert ran[call_id] == 1 and invocation.result is not None
            if invocation is None:
                assert call_id not in ran
        for step in await store.list_steps(RUN):
            if step.status is StepStatus.COMPLETED:
                assert step.assistant_message in history


def _pairs_complete(history: list[dict[str, Any]]) -> bool:
    calls = {c["id"] for m in history for c in m.get("tool_calls", [])}  # type: ignore[attr-defined]
    results = {m["tool_call_id"] for m in history if m["kind"] == "tool_result"}
    return calls == results


def expected(kill_at: str) -> tuple[int | None, int | None, list[str], list[str], list[str]]:
    """(last completed step, open step, finished, pending, not started) right after a kill."""
    kind, _, where = kill_at.partition(":")
    if kind == "started":
        return None, None, [], [], []
    step = int(where.split("-")[0].lstrip("s"))
    last = step - 1 if step > 0 else None
    calls = [f"s{step}-c0", f"s{step}-c1"] if step < STEPS else []  # the last step answers, no tools
    return {
        "begin": (last, step, [], [], calls),
        "pending": (last, step, [], calls[:1], calls[1:]),
        "executed": (last, step, [], calls[:1], calls[1:]),
        "result": (last, step, calls[:1], [], calls[1:]),
        "mid-commit": (last, step, calls, [], []),
        "step": (step, None, [], [], []),
    }[kind]


# Each chain kills the run, resumes it and kills the resumed process at the next point, and so on.
CHAINS = {
    "tool-points": ["pending:s0-c0", "executed:s1-c0", "mid-commit:2"],
    "step-points": ["started", "result:s1-c0", "step:1", "begin:2", "mid-commit:3"],
}


@pytest.mark.parametrize("chain", list(CHAINS))
async def test_killed_run_resumes_without_losing_or_repeating_work(tmp_path: Path, chain: str) -> None:
    db, effects = tmp_path / "memory.db", tmp_path / "side_effects.log"
    unknown: set[str] = set()
    for kill_at in CHAINS[chain]:
        crashed = run_worker(db, effects, kill_at)
        assert crashed.returncode == -signal.SIGKILL, crashed.stderr
        assert crashed.stdout.split()[-1] == kill_at
        await check_consistent(db, effects)
        last, open_index, finished, pending, not_started = expected(kill_at)
        async with MemoryStore.open(db) as store:
            point = await store.resume_point(RUN)
        assert point.run.status is RunStatus.RUNNING
        assert (point.last_completed_step.index if point.last_completed_step else None) == last
        assert (point.open_step.index if point.open_step else None) == open_index
        assert [i.tool_call_id for i in point.finished] == finished
        assert [i.tool_call_id for i in point.pending] == pending
        assert [c["id"] for c in point.not_started] == not_started
        ran = executions(effects)
        assert all(ran[c] == 1 for c in finished) and all(c not in ran for c in not_started)
        assert all(ran[c] == (kill_at.startswith("executed") and 1) for c in pending)
        unknown |= set(pending)

    resumed = run_worker(db, effects)
    assert resumed.returncode == 0, resumed.stderr
    await check_consistent(db, effects)
    async with MemoryStore.open(db) as store:
        assert (await store.get_run(RUN)).status is RunStatus.COMPLETED
        steps = await store.list_steps(RUN)
        assert [(s.index, s.status) for s in steps] == [(i, StepStatus.COMPLETED) for i in range(STEPS + 1)]
        history = await store.load_history("thread-1")
        assert history[-1]["content"] == "all done"
        for call_id in unknown:
            # Its outcome was unknown: reported to the model as such, never executed a second time.
            result = await store.get_tool_result(call_id)
            assert result is not None and result["is_error"] is True
    never_ran = {c for c in unknown if c not in executions(effects)}
    assert set(executions(effects)) == set(ALL_CALLS) - never_ran
    assert never_ran == {c for k in CHAINS[chain] if k.startswith("pending") for c in [k.partition(":")[2]]}


@pytest.mark.parametrize("progress", [7, 16])
async def test_killed_from_outside_at_an_arbitrary_moment(tmp_path: Path, progress: int) -> None:
    db, effects = tmp_path / "memory.db", tmp_path / "side_effects.log"
    worker = subprocess.Popen(
        [sys.executable, str(WORKER), str(db), str(effects), ""], stdout=subprocess.PIPE, text=True
    )
    assert worker.stdout is not None
    for _ in range(progress):
        if not worker.stdout.readline():
            break
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=60)
    worker.stdout.close()
    await check_consistent(db, effects)
    assert run_worker(db, effects).returncode == 0
    await check_consistent(db, effects)
    async with MemoryStore.open(db) as store:
        assert (await store.get_run(RUN)).status is RunStatus.COMPLETED
