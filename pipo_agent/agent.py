"""The agent loop: call the model, run the tools it asks for, repeat until it answers or a limit stops it.

    agent = Agent(backend, tools=[calculator_tool()], system_prompt="...", memory=store)
    result = await agent.run("What is 12*7?")             # or, streaming:
    async with agent.stream("What is 12*7?") as run:
        async for event in run: ...
    result = run.result

One step is one model turn and the tool calls it made. The calls of a turn run in a task group, at most
``tool_concurrency`` at once, and their results go back to the model in CALL order; a tool marked
``run_alone`` runs by itself, between its neighbours. Whatever a tool does (raise, hang past its timeout) or
the model writes (a malformed block, an unknown tool, invalid arguments) becomes a tool result the model
reads; mistakes of the model use up ``max_tool_retries`` (counted per turn), past which the run stops.

Limits end a run gracefully with a :class:`~pipo_agent.run_events.RunResult` whose ``stop_reason`` says
which one: ``max_steps``, ``token_budget`` (generated tokens, reasoning included; each request's
``max_tokens`` is capped by what is left), ``wall_timeout_s``, ``idle_timeout_s`` (the longest silence of the
backend's stream). When a turn asks for tools but no further turn is allowed, its valid calls are answered
"not run" instead of running side effects nobody will read. Backend errors fail the run and are raised.

**Memory and resume.** With a store, each run is a ``runs`` row and each step commits through
``begin_step`` -> ``record_tool_pending`` (before a tool runs) -> ``record_tool_result`` (after) ->
``complete_step``. :meth:`Agent.resume` continues a run that died (still ``running``) or was ``interrupted``:
finished tool results are reused, never run again, and a call left ``pending`` by a crash is answered
"outcome unknown after a crash; not re-run" rather than re-run, because its side effect may already have
happened and only the model (or a person) can judge whether repeating it is safe. Tool-call ids must be
unique across the runs of a store; the shipped backends draw random ones.

**Cancellation.** Cancelling the caller's scope (or Ctrl-C) stops the model stream and the tools at once;
the partial turn (streamed text, finished tool results) is saved with ``save_partial_turn`` under a shield
and the cancellation propagates. A timeout or :meth:`RunStream.cancel` does the same but returns a result.

Runs on asyncio and trio (memory on trio: :class:`~pipo_agent.memory.ThreadedMemoryStore`).

This file is long on purpose: the loop, the state it mutates and the order in which it persists that
state are one argument (why a crash at any point is safe to resume), best read top to bottom. Events and
streaming live in :mod:`~pipo_agent.run_events`, store access in :mod:`~pipo_agent.run_store`, the tau
rule in :mod:`~pipo_agent.thresholds`.
"""

import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Final, Self, assert_never

import anyio
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from pipo_agent.backend import (
    ChatBackend,
    ChatRequest,
    ChatResult,
    ReasoningDelta,
    SamplingSettings,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    TurnAccumulator,
    aclose_stream,
)
from pipo_agent.errors import AgentUsageError
from pipo_agent.messages import (
    AssistantMessage,
    FinishReason,
    InvalidToolCall,
    Message,
    SystemMessage,
    ToolCall,
    ToolResultMessage,
    Usage,
    UserMessage,
)
from pipo_agent.run_events import (
    Emit,
    Hook,
    ReasoningEvent,
    RunEndEvent,
    RunResult,
    RunStartEvent,
    RunStream,
    StepEndEvent,
    StepStartEvent,
    StepUsageEvent,
    StopReason,
    TextEvent,
    ToolCallEvent,
    ToolResultEvent,
    emitter,
)
from pipo_agent.run_store import Recorder, StoreCaller, StoreRecorder, add_usage, compact_messages
from pipo_agent.thresholds import ThresholdPolicy, outcome_of
from pipo_agent.toolset import DEFAULT_TOOL_TIMEOUT_S, Tool, Toolset

if TYPE_CHECKING:
    from pipo_agent.memory import MemoryStore, ThreadedMemoryStore

__all__ = ["OUTCOME_UNKNOWN", "Agent", "AgentConfig"]

logger = logging.getLogger(__name__)

OUTCOME_UNKNOWN: Final = "outcome unknown after a crash; not re-run"
_PERSIST_TIMEOUT_S: Final = 30.0  # bound on saving a cancelled run's partial turn


class AgentConfig(BaseModel):
    """How a run is bounded and sampled. ``None`` switches a limit off; unknown keys are errors."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    max_steps: int = Field(default=10, ge=1)
    token_budget: int | None = Field(default=None, ge=1)  # generated tokens over the run, reasoning included
    wall_timeout_s: float | None = Field(default=None, gt=0)
    idle_timeout_s: float | None = Field(default=None, gt=0)  # reset by every event the backend streams
    tool_concurrency: int = Field(default=4, ge=1)
    tool_timeout_s: float | None = Field(default=DEFAULT_TOOL_TIMEOUT_S, gt=0)  # for tools given as functions
    max_tool_retries: int = Field(default=2, ge=0)  # turns with mistaken calls the model may correct
    sampling: SamplingSettings = Field(default_factory=SamplingSettings)
    task_type: str | None = Field(default=None, min_length=1, max_length=128)
    compact_after_messages: int | None = Field(default=None, ge=2)  # history length that triggers compaction
    compact_keep_last: int = Field(default=6, ge=0)  # messages compaction keeps verbatim (or a few more)

    @model_validator(mode="after")
    def _keep_fewer_than_trigger(self) -> Self:
        after = self.compact_after_messages
        if after is not None and self.compact_keep_last >= after:
            raise ValueError(
                f"compact_keep_last ({self.compact_keep_last}) must be < compact_after_messages ({after})"
            )
        return self


@dataclass
class _Run:
    """One run's mutable state: what the loop has done, and what an interruption must save."""

    recorder: Recorder
    messages: list[Message]  # as the model sees them: system prompt, history, this run's turns
    task_type: str | None
    tau: float | None
    tau_explicit: bool
    sampling: SamplingSettings
    limiter: anyio.CapacityLimiter
    resumed: bool = False
    cancel_scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    usage: Usage = field(default_factory=Usage)
    steps: int = 0  # turns generated, the open one included
    mistakes: int = 0  # turns with a mistaken call
    turn: TurnAccumulator | None = None  # the turn being generated, until its step is begun in the store
    open_message: AssistantMessage | None = None  # the step whose tools are being answered
    results: dict[str, ToolResultMessage] = field(default_factory=dict)  # of the open step
    reused: set[str] = field(default_factory=set)  # results taken from memory on resume
    stored: set[str] = field(default_factory=set)  # results already in the store (recorded one by one)
    unknown: set[str] = field(default_factory=set)  # calls left pending by a crash
    model_s: float = 0.0


class Agent:
    """An LLM agent over a :class:`~pipo_agent.backend.ChatBackend`; see the module docstring.

    ``tools`` are :class:`~pipo_agent.toolset.Tool` objects (which keep their own timeout) or typed functions
    (given ``config.tool_timeout_s``), or a ready :class:`~pipo_agent.toolset.Toolset`. ``memory`` makes runs
    durable and enables :meth:`resume` and adaptive ``tau`` (``thresholds``; ``None`` switches it off).
    ``hooks`` observe every run's events. The agent does not own the backend or the store.
    """

    def __init__(
        self,
        backend: ChatBackend,
        *,
        tools: Toolset | Iterable[Tool | Callable[..., Any]] = (),
        system_prompt: str | None = None,
        config: AgentConfig | None = None,
        memory: "MemoryStore | ThreadedMemoryStore | None" = None,
        thresholds: ThresholdPolicy | None = ThresholdPolicy(),  # noqa: B008 (frozen, so sharing it is safe)
        hooks: Sequence[Hook] = (),
    ) -> None:
        self.backend = backend
        self.config = config if config is not None else AgentConfig()
        timeout = self.config.tool_timeout_s
        self.toolset = (
            tools
            if isinstance(tools, Toolset)
            else Toolset(t if isinstance(t, Tool) else Tool.from_function(t, timeout=timeout) for t in tools)
        )
        self.system_prompt = system_prompt
        self.memory = memory
        self.thresholds = thresholds
        self.hooks = tuple(hooks)
        self._db = StoreCaller(memory) if memory is not None else None

    # ---- public API ----

    async def run(
        self,
        task: str,
        *,
        thread_id: str | None = None,
        task_type: str | None = None,
        sampling: SamplingSettings | None = None,
        history: Sequence[Message] = (),
        hooks: Sequence[Hook] = (),
    ) -> RunResult:
        """Run ``task`` to its end. ``thread_id`` continues a stored conversation (memory only);
        ``history`` gives earlier messages to an agent without memory; ``sampling`` overrides the config's
        (an explicit ``tau`` there wins over the adaptive one)."""
        run = await self._new_run(task, thread_id, task_type, sampling, history)
        return await self._execute(run, emitter([*self.hooks, *hooks]))

    def stream(
        self,
        task: str,
        *,
        thread_id: str | None = None,
        task_type: str | None = None,
        sampling: SamplingSettings | None = None,
        history: Sequence[Message] = (),
        hooks: Sequence[Hook] = (),
    ) -> "RunStream":
        """The run's events: ``async with agent.stream(task) as run: async for event in run: ...``."""
        start = partial(self._new_run, task, thread_id, task_type, sampling, history)
        return RunStream(partial(self._start_and_execute, start), [*self.hooks, *hooks])

    async def resume(self, run_id: str, *, hooks: Sequence[Hook] = ()) -> RunResult:
        """Continue an unfinished run from its last completed step (see the module docstring)."""
        run = await self._resumed_run(run_id)
        return await self._execute(run, emitter([*self.hooks, *hooks]))

    def stream_resume(self, run_id: str, *, hooks: Sequence[Hook] = ()) -> "RunStream":
        """:meth:`resume`, streamed like :meth:`stream`."""
        start = partial(self._resumed_run, run_id)
        return RunStream(partial(self._start_and_execute, start), [*self.hooks, *hooks])

    async def _start_and_execute(
        self, start: Callable[[], Awaitable[_Run]], emit: Emit, scope: anyio.CancelScope
    ) -> RunResult:
        run = await start()
        run.cancel_scope = scope
        return await self._execute(run, emit)

    # ---- starting a run ----

    async def _new_run(
        self,
        task: str,
        thread_id: str | None,
        task_type: str | None,
        sampling: SamplingSettings | None,
        history: Sequence[Message],
    ) -> _Run:
        db = self._store()
        if db is None and thread_id is not None:
            raise AgentUsageError("thread_id needs memory; without memory pass history=")
        if db is not None and history:
            raise AgentUsageError("history= is for agents without memory; with memory pass thread_id=")
        settings = self.config.sampling.merged(sampling) if sampling is not None else self.config.sampling
        task_type = task_type or settings.task_type or self.config.task_type
        explicit = settings.tau is not None
        tau: float | None = settings.tau
        if not explicit and self.thresholds is not None:
            if db is not None and task_type is not None:
                tau = await self.thresholds.choose(db, task_type)
            else:
                tau = self.thresholds.initial_tau
        recorder: Recorder
        if db is None:
            recorder, stored = Recorder(), [*history, UserMessage(content=task)]
        else:
            config = {
                "tau": tau,
                "tau_explicit": explicit,
                "sampling": settings.model_dump(mode="json"),
                "agent": self.config.model_dump(mode="json"),
            }
            recorder = await StoreRecorder.open_run(
                db, thread_id=thread_id, task=task, task_type=task_type, config=config
            )
            stored = await recorder.history()
        limiter = anyio.CapacityLimiter(self.config.tool_concurrency)
        return _Run(recorder, self._with_system(stored), task_type, tau, explicit, settings, limiter)

    async def _resumed_run(self, run_id: str) -> _Run:
        db = self._store()
        if db is None:
            raise AgentUsageError("resume needs an agent with memory")
        resumed = await StoreRecorder.reopen_run(db, run_id)
        return _Run(
            resumed.recorder,
            self._with_system(resumed.history),
            resumed.task_type,
            resumed.tau,
            resumed.tau_explicit,
            resumed.sampling,
            anyio.CapacityLimiter(self.config.tool_concurrency),
            resumed=True,
            usage=resumed.usage,
            steps=len(resumed.turns),
            mistakes=sum(1 for turn in resumed.turns if turn is not None and self._mistakes(turn)),
            open_message=resumed.open_message,
            results=dict(resumed.finished),
            reused=set(resumed.finished),
            stored=set(resumed.finished),
            unknown=set(resumed.pending),
        )

    def _store(self) -> StoreCaller | None:
        if self._db is not None:
            self._db.check_backend()
        return self._db

    def _with_system(self, messages: Sequence[Message]) -> list[Message]:
        system = [SystemMessage(content=self.system_prompt)] if self.system_prompt else []
        return [*system, *messages]

    # ---- the run ----

    async def _execute(self, run: _Run, emit: Emit) -> RunResult:
        recorder = run.recorder
        stop: StopReason | None = None
        try:
            await emit(
                RunStartEvent(
                    run_id=recorder.run_id,
                    thread_id=recorder.thread_id,
                    task_type=run.task_type,
                    tau=run.tau,
                    resumed=run.resumed,
                )
            )
            with run.cancel_scope, anyio.move_on_after(self.config.wall_timeout_s) as wall:
                stop = await self._steps(run, emit)
            if stop is None:
                stop = StopReason.WALL_TIMEOUT if wall.cancelled_caught else StopReason.CANCELLED
            result = await self._finish(run, stop)
        except BaseException as exc:
            with anyio.CancelScope(shield=True), anyio.move_on_after(_PERSIST_TIMEOUT_S):
                await self._abandon(run, exc)
            raise
        await emit(RunEndEvent(result=result))
        return result

    async def _steps(self, run: _Run, emit: Emit) -> StopReason:
        if run.open_message is not None:  # resumed in the middle of a step
            await emit(StepStartEvent(step=run.steps - 1))
            if (stop := await self._tools_step(run, run.open_message, emit)) is not None:
                return stop
        while True:
            await self._maybe_compact(run)
            step = run.steps
            await emit(StepStartEvent(step=step))
            turn = await self._generate(run, step, emit)
            if turn is None:
                return StopReason.IDLE_TIMEOUT
            message = turn.message
            run.steps += 1
            run.usage = add_usage(run.usage, turn.usage)
            await emit(StepUsageEvent(step=step, usage=turn.usage, total=run.usage))
            if self._mistakes(message):
                run.mistakes += 1
            await run.recorder.begin_step(message)
            run.turn, run.open_message, run.results = None, message, {}
            if not message.tool_calls and not message.invalid_tool_calls:
                await self._commit(run, message, emit, tools_s=0.0)
                return (
                    StopReason.ANSWERED if turn.finish_reason is FinishReason.STOP else StopReason.TRUNCATED
                )
            if (stop := await self._tools_step(run, message, emit)) is not None:
                return stop

    async def _generate(self, run: _Run, step: int, emit: Emit) -> ChatResult | None:
        """One streamed turn; ``None`` when the backend fell silent for ``idle_timeout_s``."""
        request = ChatRequest(
            messages=run.messages, tools=self.toolset.schemas(), sampling=self._turn_sampling(run, step)
        )
        accumulator = run.turn = TurnAccumulator()
        started = time.perf_counter()
        events = self.backend.stream(request)
        try:
            while True:
                with anyio.move_on_after(self.config.idle_timeout_s) as idle:
                    try:
                        event = await anext(events)
                    except StopAsyncIteration:
                        break
                if idle.cancelled_caught:
                    return None
                accumulator.add(event)
                await _forward(event, step, emit)
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(_PERSIST_TIMEOUT_S):
                await aclose_stream(events)
            run.model_s = time.perf_counter() - started
        return accumulator.result()

    def _turn_sampling(self, run: _Run, step: int) -> SamplingSettings:
        settings, update = run.sampling, dict[str, Any]()
        if run.tau is not None:
            update["tau"] = run.tau
        if run.task_type is not None:
            update["task_type"] = run.task_type
        if settings.seed is not None:  # a fresh stream per turn, reproducible
            update["seed"] = settings.seed + step
        if (budget := self.config.token_budget) is not None:
            left = max(1, budget - run.usage.completion_tokens)
            update["max_tokens"] = min(settings.max_tokens or left, left)
        return settings.model_copy(update=update)

    async def _tools_step(self, run: _Run, message: AssistantMessage, emit: Emit) -> StopReason | None:
        """Answer the open step's calls and commit it; the stop reason if no further turn is allowed."""
        stop = self._limit(run)
        started = time.perf_counter()
        await self._answer_calls(run, run.steps - 1, message, stop, emit)
        await self._commit(run, message, emit, tools_s=time.perf_counter() - started)
        return stop

    def _limit(self, run: _Run) -> StopReason | None:
        config = self.config
        if run.mistakes > config.max_tool_retries:
            return StopReason.TOOL_RETRIES
        if run.steps >= config.max_steps:
            return StopReason.MAX_STEPS
        if config.token_budget is not None and run.usage.completion_tokens >= config.token_budget:
            return StopReason.TOKEN_BUDGET
        return None

    async def _answer_calls(
        self, run: _Run, step: int, message: AssistantMessage, stop: StopReason | None, emit: Emit
    ) -> None:
        runnable: list[ToolCall] = []
        for call in _calls(message):
            if call.id in run.results:  # finished before a crash
                await emit(
                    ToolResultEvent(step=step, result=run.results[call.id], reused=call.id in run.reused)
                )
                continue
            if call.id in run.unknown:
                result = _error(call, OUTCOME_UNKNOWN)
                await run.recorder.tool_result(result)
                run.stored.add(call.id)
            elif self._is_mistake(call):
                result = await self.toolset.call(call)  # validation fails first: nothing runs
            elif stop is not None:
                result = _error(call, f"not run: {self._detail(run, stop)}")
            else:
                assert isinstance(call, ToolCall)
                runnable.append(call)
                continue
            run.results[call.id] = result
            await emit(ToolResultEvent(step=step, result=result))
        for batch in _batches(runnable, self.toolset):
            async with anyio.create_task_group() as group:
                for call in batch:
                    group.start_soon(self._run_call, run, step, call, emit)

    async def _run_call(self, run: _Run, step: int, call: ToolCall, emit: Emit) -> None:
        async with run.limiter:
            await run.recorder.tool_pending(call.id)  # committed before the side effect
            result = await self.toolset.call(call)
            with anyio.CancelScope(shield=True):  # the side effect happened: keep its result
                await run.recorder.tool_result(result)
                run.results[call.id] = result
                run.stored.add(call.id)
        await emit(ToolResultEvent(step=step, result=result))

    async def _commit(self, run: _Run, message: AssistantMessage, emit: Emit, *, tools_s: float) -> None:
        results = [run.results[call.id] for call in _calls(message)]
        unstored = [r for r in results if r.tool_call_id not in run.stored]
        timings = {"model_s": round(run.model_s, 6), "tools_s": round(tools_s, 6)}
        await run.recorder.complete_step(unstored, message.usage or Usage(), timings)
        run.messages += [message, *results]
        run.open_message, run.results, run.stored, run.model_s = None, {}, set(), 0.0
        await emit(StepEndEvent(step=run.steps - 1, message=message))

    async def _maybe_compact(self, run: _Run) -> None:
        after = self.config.compact_after_messages
        offset = 1 if self.system_prompt else 0
        if after is None or len(run.messages) - offset <= after:
            return
        keep = self.config.compact_keep_last
        if isinstance(run.recorder, StoreRecorder):
            if await run.recorder.compact(keep):
                run.messages = self._with_system(await run.recorder.history())
        elif (compacted := compact_messages(run.messages[offset:], keep)) is not None:
            run.messages = self._with_system(compacted)

    # ---- ending a run ----

    async def _finish(self, run: _Run, stop: StopReason) -> RunResult:
        if stop in (StopReason.WALL_TIMEOUT, StopReason.IDLE_TIMEOUT, StopReason.CANCELLED):
            with anyio.CancelScope(shield=True), anyio.move_on_after(_PERSIST_TIMEOUT_S):
                await self._save_partial(run)
        else:
            await run.recorder.finish(answered=stop is StopReason.ANSWERED, detail=self._detail(run, stop))
        result = RunResult(
            run_id=run.recorder.run_id,
            thread_id=run.recorder.thread_id,
            stop_reason=stop,
            detail=self._detail(run, stop),
            output=next((m.content for m in reversed(run.messages) if isinstance(m, AssistantMessage)), ""),
            messages=list(run.messages),
            usage=run.usage,
            steps=run.steps,
            tool_mistakes=run.mistakes,
            tau=run.tau,
            task_type=run.task_type,
        )
        if self.thresholds is not None and self._db is not None and run.task_type is not None:
            outcome = outcome_of(result)
            await self.thresholds.record(
                self._db, run.task_type, outcome, run.usage, adapt=not run.tau_explicit
            )
        return result

    async def _save_partial(self, run: _Run) -> None:
        """Keep what the interrupted turn produced, in memory and in the store (which marks the run cancelled)."""
        message = run.turn.partial() if run.turn is not None else None
        step = run.open_message
        answered = (
            [run.results[c.id] for c in _calls(step) if c.id in run.results] if step is not None else []
        )
        usage = (
            message.usage if message is not None else step.usage if step is not None else None
        ) or Usage()
        unstored = [r for r in answered if r.tool_call_id not in run.stored]
        await run.recorder.save_partial(message, unstored, usage)
        kept = message if message is not None else step
        if kept is not None:
            done = {r.tool_call_id for r in answered}
            kept = kept.model_copy(update={"tool_calls": [c for c in kept.tool_calls if c.id in done]})
            if kept.content or kept.reasoning or kept.tool_calls or kept.invalid_tool_calls:
                run.messages += [kept, *answered]
        run.turn, run.open_message, run.results, run.stored = None, None, {}, set()

    async def _abandon(self, run: _Run, exc: BaseException) -> None:
        """Persist a run that an exception ended: a cancellation keeps the partial turn, an error fails it."""
        try:
            if _is_cancellation(exc):
                await self._save_partial(run)
            else:
                await run.recorder.fail(f"{type(exc).__name__}: {exc}")
        except Exception:  # the original exception matters more; the store's failure is logged
            logger.exception("could not record the end of run %s", run.recorder.run_id)

    def _detail(self, run: _Run, stop: StopReason) -> str:
        config = self.config
        match stop:
            case StopReason.ANSWERED:
                return "the model answered"
            case StopReason.TRUNCATED:
                return "the last turn was cut off by max_tokens"
            case StopReason.MAX_STEPS:
                return f"the step cap of {config.max_steps} was reached"
            case StopReason.TOKEN_BUDGET:
                used = run.usage.completion_tokens
                return f"the token budget of {config.token_budget} is spent ({used} generated, reasoning included)"
            case StopReason.TOOL_RETRIES:
                return f"{run.mistakes} turns had mistaken tool calls; max_tool_retries is {config.max_tool_retries}"
            case StopReason.WALL_TIMEOUT:
                return f"the run took longer than wall_timeout_s={config.wall_timeout_s}"
            case StopReason.IDLE_TIMEOUT:
                return f"the backend sent nothing for idle_timeout_s={config.idle_timeout_s}"
            case StopReason.CANCELLED:
                return "the run was cancelled"
            case _:
                assert_never(stop)

    # ---- tool-call checks ----

    def _is_mistake(self, call: ToolCall | InvalidToolCall) -> bool:
        """A call the model got wrong: malformed, an unknown tool, or arguments that fail validation."""
        if isinstance(call, InvalidToolCall):
            return True
        found = self.toolset.get(call.name)
        if found is None:
            return True
        try:
            found.arguments_model.model_validate(call.arguments)
        except ValidationError:
            return True
        return False

    def _mistakes(self, message: AssistantMessage) -> bool:
        return any(self._is_mistake(call) for call in _calls(message))


async def _forward(event: StreamEvent, step: int, emit: Emit) -> None:
    if isinstance(event, ReasoningDelta):
        await emit(ReasoningEvent(step=step, text=event.text))
    elif isinstance(event, TextDelta):
        await emit(TextEvent(step=step, text=event.text))
    elif isinstance(event, ToolCallDelta):
        await emit(ToolCallEvent(step=step, call=event.call))


def _calls(message: AssistantMessage) -> list[ToolCall | InvalidToolCall]:
    """A turn's calls in the order their results go back: valid calls, then invalid ones (as the store
    orders them when it commits a step)."""
    return [*message.tool_calls, *message.invalid_tool_calls]


def _batches(calls: Sequence[ToolCall], toolset: Toolset) -> list[list[ToolCall]]:
    """Consecutive calls run together; a ``run_alone`` tool's call is a batch of its own."""
    batches: list[list[ToolCall]] = []
    for call in calls:
        tool = toolset.get(call.name)
        alone = tool is not None and tool.run_alone
        if alone or not batches or _alone(batches[-1], toolset):
            batches.append([call])
        else:
            batches[-1].append(call)
    return batches


def _alone(batch: list[ToolCall], toolset: Toolset) -> bool:
    tool = toolset.get(batch[0].name)
    return tool is not None and tool.run_alone


def _error(call: ToolCall | InvalidToolCall, text: str) -> ToolResultMessage:
    return ToolResultMessage(tool_call_id=call.id, name=call.name, content=f"Error: {text}", is_error=True)


def _is_cancellation(exc: BaseException) -> bool:
    if isinstance(exc, BaseExceptionGroup):
        return all(_is_cancellation(inner) for inner in exc.exceptions)
    return isinstance(exc, (anyio.get_cancelled_exc_class(), KeyboardInterrupt))
