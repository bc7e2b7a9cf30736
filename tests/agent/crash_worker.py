"""An agent run that SIGKILLs its own process at a named point; run by ``test_crash.py`` as a subprocess.

    python crash_worker.py DB SIDE_EFFECTS KILL_AT

The scripted model calls ``effect`` twice in each of steps 0..2 (ids ``s{i}-c{j}``) and answers in step 3.
``effect`` appends its tag to SIDE_EFFECTS (fsynced), so the parent can count executions. Kill points:

- ``effect:TAG``: inside the tool, right after its side effect, before its result is recorded;
- ``commit:TAG``: inside the transaction that completes the step whose last call is TAG, before it commits;
- ``step_end:N``: right after step N committed;
- ``usage:N``: after step N's turn was generated, before the step is begun in the store.
"""

import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import anyio
from sqlalchemy import event
from sqlalchemy.orm import Session

from pipo_agent.agent import Agent, AgentConfig
from pipo_agent.memory import MemoryStore
from pipo_agent.messages import AssistantMessage, ToolCall
from pipo_agent.run_events import RunEvent
from pipo_agent.testing import ScriptedBackend

STEPS = 3


def script() -> list[AssistantMessage]:
    turns = [
        AssistantMessage(
            reasoning=f"step {i}",
            tool_calls=[
                ToolCall(id=f"s{i}-c{j}", name="effect", arguments={"tag": f"s{i}-c{j}"}) for j in range(2)
            ],
        )
        for i in range(STEPS)
    ]
    return [*turns, AssistantMessage(reasoning="all done", content="Answer: done")]


def effect_tool(side_effects: Path, kill_at: str) -> Callable[[str], str]:
    def effect(tag: str) -> str:
        """Append the tag to the side-effect file.

        Args:
            tag: What to append.
        """
        fd = os.open(side_effects, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            os.write(fd, f"{tag}\n".encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        if kill_at == f"effect:{tag}":
            os.kill(os.getpid(), signal.SIGKILL)
        return f"did {tag}"

    return effect


def main(db: Path, side_effects: Path, kill_at: str) -> None:
    armed = False

    def before_commit(session: Session) -> None:
        if armed:
            os.kill(os.getpid(), signal.SIGKILL)

    def hook(e: RunEvent) -> None:
        nonlocal armed
        if e.kind == "step_end" and kill_at == f"step_end:{e.step}":
            os.kill(os.getpid(), signal.SIGKILL)
        if e.kind == "usage" and kill_at == f"usage:{e.step}":
            os.kill(os.getpid(), signal.SIGKILL)
        if e.kind == "tool_result" and kill_at == f"commit:{e.result.tool_call_id}":
            armed = True  # the next commit is complete_step's (the tag is its step's last call)

    event.listen(Session, "before_commit", before_commit)

    async def run() -> None:
        async with MemoryStore.open(db) as store:
            config = AgentConfig(tool_concurrency=1, max_steps=10)
            agent = Agent(
                ScriptedBackend(script()),
                tools=[effect_tool(side_effects, kill_at)],
                memory=store,
                config=config,
            )
            await agent.run("do the steps", hooks=[hook])

    anyio.run(run)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3])
