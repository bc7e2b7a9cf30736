"""One agent task against an OpenAI-compatible server, its runs and history kept in SQL memory.

The compose file's ``agent`` service runs this through ``entrypoint.sh agent TASK``: the agent (calculator
and lookup tools) reaches the model only over HTTP (:class:`HttpChatBackend`), and its memory is the
PostgreSQL service (any URL :class:`~pipo_agent.memory.MemoryStore` accepts works, e.g. an SQLite file).
Prints the run's result as one JSON object; exits 0 when the run ended (answered or not), 1 on an error.
"""

import argparse
import json
import sys
from pathlib import Path

import anyio
from sqlalchemy import make_url

from pipo_agent.agent import Agent, AgentConfig
from pipo_agent.backend import SamplingSettings
from pipo_agent.backends.http import HttpChatBackend
from pipo_agent.errors import PipoAgentError
from pipo_agent.memory import MemoryStore
from pipo_agent.tasks import SYSTEM_PROMPT
from pipo_agent.thresholds import infer_task_type
from pipo_agent.tools import calculator_tool, lookup_tool


def _secret(path: Path | None) -> str | None:
    if path is None:
        return None
    return (sys.stdin.read() if str(path) == "-" else path.read_text()).strip() or None


async def run(args: argparse.Namespace) -> dict[str, object]:
    memory = make_url(args.memory_url)
    password = _secret(args.memory_password_file)
    if password is not None:
        memory = memory.set(password=password)
    config = AgentConfig(max_steps=args.max_steps, sampling=SamplingSettings(max_tokens=args.max_tokens))
    backend = HttpChatBackend.connect(args.server_url, args.model, api_key=_secret(args.api_key_file))
    async with backend, MemoryStore.open(memory) as store:
        agent = Agent(
            backend,
            tools=[calculator_tool(), lookup_tool()],
            system_prompt=SYSTEM_PROMPT,
            config=config,
            memory=store,
        )
        result = await agent.run(args.task, task_type=args.task_type or infer_task_type(args.task))
    return {
        "run_id": result.run_id,
        "stop_reason": str(result.stop_reason),
        "steps": result.steps,
        "output": result.output,
        "tau": result.tau,
        "usage": result.usage.model_dump(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("task")
    parser.add_argument("--server-url", required=True, help="the server's base URL, ending in /v1")
    parser.add_argument("--model", default="pipo-default")
    parser.add_argument("--api-key-file", type=Path, default=None, help="'-' reads standard input")
    parser.add_argument("--memory-url", required=True, help="e.g. postgresql+asyncpg://pipo@postgres/pipo")
    parser.add_argument("--memory-password-file", type=Path, default=None)
    parser.add_argument("--task-type", default=None)
    parser.add_argument("--max-steps", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=1024)
    args = parser.parse_args(argv)
    try:
        print(json.dumps(anyio.run(run, args)))
    except PipoAgentError as exc:
        print(f"the agent failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
