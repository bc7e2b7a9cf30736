"""kill -9 an agent mid-run, then resume it here: every side effect happens exactly once, completed work is
kept, and the history stays well-formed (every call answered, in call order).

``crash_worker.py`` runs a scripted agent on an SQLite file and SIGKILLs itself at a chosen point; the test
then resumes the run in this process with the rest of the same script.
"""

import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from pipo_agent.agent import OUTCOME_UNKNOWN, Agent
from pipo_agent.memory import RunStatus
from pipo_agent.run_events import StopReason
from pipo_agent.testing import ScriptedBackend

from .conftest import on_store, open_memory

pytestmark = pytest.mark.anyio

WORKER = Path(__file__).with_name("crash_worker.py")
TAGS = [f"s{i}-c{j}" for i in range(3) for j in range(2)]


def load_worker() -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location("crash_worker", WORKER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def kill_run(db: Path, effects: Path, kill_at: str) -> None:
    done = subprocess.run(
        [sys.executable, str(WORKER), str(db), str(effects), kill_at],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    with sqlite3.connect(db) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)


@pytest.mark.parametrize(
    ("kill_at", "open_step", "unknown"),
    [
        ("effect:s1-c1", 1, {"s1-c1"}),  # after a side effect, before its result and the step's commit
        ("commit:s1-c1", 1, set()),  # inside the step's commit transaction: both results were recorded
        ("step_end:0", None, set()),  # after a completed step
        ("usage:2", None, set()),  # the model's turn was generated but its step never begun
    ],
)
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_resume_after_kill_9_runs_every_side_effect_once(
    tmp_path: Path, kill_at: str, open_step: int | None, unknown: set[str]
) -> None:
    db, effects = tmp_path / "agent.db", tmp_path / "effects.txt"
    kill_run(db, effects, kill_at)
    before = Counter(effects.read_text().split()) if effects.exists() else Counter()
    async with open_memory(db) as memory:
        (thread,) = await on_store(memory, lambda s: s.list_threads())
        (run,) = await on_store(memory, lambda s: s.list_runs(thread.id))
        point = await on_store(memory, lambda s: s.resume_point(run.id))
        assert point.run.status is RunStatus.RUNNING
        assert (point.open_step.index if point.open_step else None) == open_step
        worker = load_worker()
        rest = worker.script()[point.next_step_index :]
        agent = Agent(ScriptedBackend(rest), tools=[worker.effect_tool(effects, "")], memory=memory)
        result = await agent.resume(run.id)
        history = await on_store(memory, lambda s: s.load_history(thread.id))
        stored = await on_store(memory, lambda s: s.get_run(run.id))
    assert result.stop_reason is StopReason.ANSWERED and stored.status is RunStatus.COMPLETED
    assert Counter(effects.read_text().split()) == Counter(TAGS)  # each side effect exactly once
    assert all(before[tag] <= 1 for tag in TAGS)
    calls = [c["id"] for m in history for c in m.get("tool_calls", [])]
    answered = [m["tool_call_id"] for m in history if m["kind"] in ("tool", "tool_result")]
    assert calls == answered == TAGS  # every call answered once, in call order
    outcomes = {m["tool_call_id"]: m["content"] for m in history if m["kind"] in ("tool", "tool_result")}
    assert {tag for tag, text in outcomes.items() if OUTCOME_UNKNOWN in text} == unknown
    assert [m["kind"] for m in history].count("assistant") == 4 and history[-1]["content"] == "Answer: done"
