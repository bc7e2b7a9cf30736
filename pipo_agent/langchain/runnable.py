"""``AgentRunnable``: a pipo-agent :class:`~pipo_agent.agent.Agent` as a LangChain ``Runnable``.

The agent keeps its own loop (tools, limits, memory, resume); LangChain sees one step from a task to the
final answer. Use it as a node or tool in a LangGraph graph, in LCEL chains, with LangChain callbacks::

    runnable = AgentRunnable(Agent(backend, tools=[calculator_tool()]))
    out = runnable.invoke("What is 12*7?")                 # or {"task": ..., "thread_id": ..., "task_type": ...}
    out["output"], out["stop_reason"], out["usage_metadata"], out["messages"]
    async for event in runnable.astream("What is 12*7?"):  # the run's typed events (RunEvent), live
        ...

Input: a task string, or an :class:`AgentInput` dict (``thread_id`` continues a stored conversation and
needs an agent with memory). Output: an :class:`AgentOutput`. ``stream`` / ``astream`` yield the run's
:data:`~pipo_agent.run_events.RunEvent` objects (reasoning and text deltas, tool calls and results, usage),
ending with ``RunEndEvent`` whose ``result`` holds the same run; leaving the stream early cancels the run.

Where the agent runs follows :class:`~pipo_agent.langchain.BackendLoop`: by default on a private event-loop
thread, where this runnable starts the agent's backend (``async with``) on first use and stops it in
:meth:`AgentRunnable.close`; that works from sync code and from any event loop. An agent with memory must
be built on that loop: pass a factory, ``AgentRunnable(make_agent)``, where ``make_agent()`` is an async
context manager that opens the backend and the store and yields the ``Agent``. With
``backend_loop="caller"`` the agent's resources already run on your (asyncio) loop; only the async methods
work then.
"""

from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import AbstractAsyncContextManager, aclosing, asynccontextmanager, closing
from functools import partial
from typing import Any, NotRequired, TypedDict

import anyio
from langchain_core.messages import BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.runnables import Runnable, RunnableConfig

from pipo_agent.agent import Agent
from pipo_agent.errors import AgentUsageError
from pipo_agent.langchain._chunks import usage_metadata
from pipo_agent.langchain._host import LoopThread
from pipo_agent.langchain.chat_model import BackendLoop
from pipo_agent.langchain.convert import to_langchain
from pipo_agent.run_events import RunEvent, RunResult

__all__ = ["AgentInput", "AgentOutput", "AgentRunnable"]

AgentFactory = Callable[[], AbstractAsyncContextManager[Agent]]


class AgentInput(TypedDict):
    task: str
    thread_id: NotRequired[str]
    task_type: NotRequired[str]


class AgentOutput(TypedDict):
    output: str  # the final answer (the last assistant turn's text)
    answered: bool  # the model answered (stop_reason "answered"), not a limit
    stop_reason: str
    detail: str
    run_id: str | None  # None without memory
    thread_id: str | None
    steps: int
    tool_mistakes: int
    tau: float | None  # the PIPO threshold the run used
    task_type: str | None
    usage_metadata: UsageMetadata  # the run's tokens, reasoning in output_token_details
    decode_stats: dict[str, Any]  # PIPO: steps, drafts_proposed, drafts_committed, tokens_per_step
    messages: list[BaseMessage]  # the conversation as the model saw it, as LangChain messages


_INPUT_KEYS = frozenset(AgentInput.__annotations__)


class AgentRunnable(Runnable[AgentInput | str, AgentOutput]):
    """An :class:`~pipo_agent.agent.Agent` (or a factory of one) as a ``Runnable``; see the module docstring."""

    def __init__(
        self,
        agent: Agent | AgentFactory,
        *,
        backend_loop: BackendLoop | str = BackendLoop.PRIVATE,
        name: str | None = None,
    ) -> None:
        self.backend_loop = BackendLoop(backend_loop)
        self.name = name or "PipoAgent"
        self._agent = agent if isinstance(agent, Agent) else None
        if self.backend_loop is BackendLoop.CALLER and self._agent is None:
            raise AgentUsageError("backend_loop='caller' takes a ready Agent, not a factory")
        enter = partial(_entered, agent) if isinstance(agent, Agent) else agent
        self._host: LoopThread[Agent] = LoopThread(enter, name=f"AgentRunnable {self.name}")

    # ---- invoke ----

    def invoke(
        self, input: AgentInput | str, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AgentOutput:
        _no_kwargs(kwargs)
        return self._call_with_config(self._invoke, input, config, run_type="chain")

    async def ainvoke(
        self, input: AgentInput | str, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AgentOutput:
        _no_kwargs(kwargs)
        return await self._acall_with_config(self._ainvoke, input, config, run_type="chain")

    def _invoke(self, input: AgentInput | str) -> AgentOutput:
        self._check_sync()
        return _output(self._host.call(partial(_run, task=_task(input))))

    async def _ainvoke(self, input: AgentInput | str) -> AgentOutput:
        task = _task(input)
        if self._agent is not None and self.backend_loop is BackendLoop.CALLER:
            return _output(await _run(self._agent, task))
        return _output(await self._host.acall(partial(_run, task=task)))

    # ---- stream: the run's events ----

    def stream(  # type: ignore[override]  # yields the run's events, not pieces of AgentOutput
        self, input: AgentInput | str, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[RunEvent]:
        _no_kwargs(kwargs)
        transform: Any = self._transform  # LangChain types stream items as the output type; these are events
        events: Iterator[Any] = self._transform_stream_with_config(
            iter([input]), transform, config, run_type="chain"
        )
        yield from events

    async def astream(  # type: ignore[override]  # yields the run's events, not pieces of AgentOutput
        self, input: AgentInput | str, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[RunEvent]:
        _no_kwargs(kwargs)

        async def one() -> AsyncIterator[AgentInput | str]:
            yield input

        transform: Any = self._atransform  # LangChain types stream items as the output type; these are events
        stream: AsyncIterator[Any] = self._atransform_stream_with_config(
            one(), transform, config, run_type="chain"
        )
        async with aclosing(stream):  # type: ignore[type-var]  # an async generator
            async for event in stream:
                yield event

    def _transform(self, inputs: Iterator[AgentInput | str]) -> Iterator[RunEvent]:
        self._check_sync()
        for input in inputs:
            with closing(self._host.iterate(partial(_events, task=_task(input)))) as events:  # type: ignore[type-var]
                yield from events

    async def _atransform(self, inputs: AsyncIterator[AgentInput | str]) -> AsyncIterator[RunEvent]:
        async for input in inputs:
            task = _task(input)
            if self._agent is not None and self.backend_loop is BackendLoop.CALLER:
                events = _events(self._agent, task)
            else:
                events = self._host.aiterate(partial(_events, task=task))
            async with aclosing(events):  # type: ignore[type-var]  # an async generator
                async for event in events:
                    yield event

    # ---- lifecycle ----

    def close(self) -> None:
        """Stop the agent's backend (and a factory's resources); a later call starts them again."""
        self._host.close()

    async def aclose(self) -> None:
        await anyio.to_thread.run_sync(self.close)

    def _check_sync(self) -> None:
        if self.backend_loop is BackendLoop.CALLER:
            raise AgentUsageError(
                "AgentRunnable(backend_loop='caller') serves async calls only (ainvoke, astream): the agent's "
                "backend runs on your event loop, which a sync call cannot use"
            )


class _Task(TypedDict):
    task: str
    thread_id: str | None
    task_type: str | None


def _task(input: object) -> _Task:
    if isinstance(input, str):
        return _Task(task=input, thread_id=None, task_type=None)
    if isinstance(input, Mapping):
        unknown = set(input) - _INPUT_KEYS
        if unknown or not isinstance(input.get("task"), str):
            raise ValueError(
                f"AgentRunnable input needs a string 'task' and only the keys {sorted(_INPUT_KEYS)}; got {dict(input)!r}"
            )
        return _Task(task=input["task"], thread_id=input.get("thread_id"), task_type=input.get("task_type"))
    raise TypeError(f"AgentRunnable input is a task string or a dict with 'task'; got {type(input).__name__}")


async def _run(agent: Agent, task: _Task) -> RunResult:
    return await agent.run(task["task"], thread_id=task["thread_id"], task_type=task["task_type"])


async def _events(agent: Agent, task: _Task) -> AsyncIterator[RunEvent]:
    async with agent.stream(task["task"], thread_id=task["thread_id"], task_type=task["task_type"]) as run:
        async for event in run:
            yield event


def _output(result: RunResult) -> AgentOutput:
    usage = result.usage
    stats = {
        name: getattr(usage, name)
        for name in ("steps", "drafts_proposed", "drafts_committed", "tokens_per_step")
        if getattr(usage, name) is not None
    }
    return AgentOutput(
        output=result.output,
        answered=result.answered,
        stop_reason=result.stop_reason.value,
        detail=result.detail,
        run_id=result.run_id,
        thread_id=result.thread_id,
        steps=result.steps,
        tool_mistakes=result.tool_mistakes,
        tau=result.tau,
        task_type=result.task_type,
        usage_metadata=usage_metadata(usage),
        decode_stats=stats,
        messages=to_langchain(result.messages),
    )


def _no_kwargs(kwargs: dict[str, Any]) -> None:
    if kwargs:
        raise TypeError(f"AgentRunnable takes no call arguments; got {sorted(kwargs)}")


@asynccontextmanager
async def _entered(agent: Agent) -> AsyncIterator[Agent]:
    async with agent.backend:
        yield agent
