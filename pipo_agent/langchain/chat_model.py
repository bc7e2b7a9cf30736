"""``ChatPIPO``: a LangChain chat model over any pipo-agent :class:`~pipo_agent.backend.ChatBackend`.

    from pipo_agent.langchain import ChatPIPO

    model = ChatPIPO(max_tokens=256)                 # the embedded default model, loaded on first use
    message = model.invoke("What is 12*7?", tau=0.8) # per-call PIPO threshold (and task_type=...)
    message.additional_kwargs["reasoning_content"]   # the think block; message.content is the answer
    message.response_metadata["tokens_per_step"]     # PIPO decode statistics, with model_name, finish_reason

**Where the backend runs.** By default (``backend_loop="private"``) ChatPIPO starts its backend (entering it
with ``async with``) on a private event loop in a daemon thread, on first use, and runs every call there:
async calls from any loop (asyncio or trio, a new loop per test) await it without blocking their loop, and
sync calls block only their own thread, never nesting an event loop. The default engines are shared by all
ChatPIPO objects of the process (one per model name, so requests batch together); a backend you pass is
taken over (started on first use, closed by :meth:`ChatPIPO.close`). With ``backend_loop="caller"`` the
backend you pass is already running on your event loop and async calls use it there directly (no thread
hop); sync calls are refused.

**Tools and structured output.** ``bind_tools`` converts tools with ``convert_to_openai_tool``. The engine
has no constrained decoding, so a forced ``tool_choice`` ("any", "required" or a tool name) and a
``response_format`` (what ``with_structured_output`` binds) are enforced by an instruction in the system
prompt, a check of the finished turn, and up to ``max_retries`` re-asks that name the problem. A checked
call streams only the accepted try (rejected tries are never shown), and its usage sums every try.

- Guaranteed: a forced ``tool_choice`` returns a turn with a well-formed call to an allowed tool with all
  its required arguments, or raises :class:`~pipo_agent.langchain.ToolChoiceError`; ``tool_choice="none"``
  hides the tools and returns calls made anyway as invalid calls.
- Not guaranteed: argument types and values beyond the required keys; a JSON answer (after the last
  re-ask the turn is returned as it is, and the output parser reports a bad answer).

``max_retries`` counts those re-asks, not transport retries (the embedded engine has no transport).
``timeout`` bounds a whole call, re-asks included, and raises ``TimeoutError``.
"""

import atexit
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import aclosing, asynccontextmanager, closing
from enum import StrEnum
from functools import partial
from typing import Any, Final, Self

import anyio
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LangSmithParams, LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ConfigDict, Field, model_validator

from pipo_agent.backend import ChatBackend, ChatRequest, SamplingSettings
from pipo_agent.errors import AgentUsageError
from pipo_agent.langchain._host import LoopThread
from pipo_agent.langchain._rules import ToolChoice, TurnRules, parse_response_format
from pipo_agent.langchain._structured import StructuredMethod, structured_output
from pipo_agent.langchain._turn import TurnCall, generate, stream_chunks
from pipo_agent.langchain.convert import from_langchain

__all__ = ["DEFAULT_MODELS", "BackendLoop", "ChatPIPO"]

DEFAULT_MODELS: Final = {"pipo-default": "pipo", "pipo-default-ar": "ar"}
"""Model names served without a ``backend``: the shipped PIPO model, and the autoregressive teacher it was
distilled from (the same engine, decoding one token per step)."""

# Per-call keyword arguments (from invoke(..., **kw), bind or bind_tools); anything else is a TypeError.
_SAMPLING: Final = ("temperature", "top_p", "top_k", "seed", "max_tokens", "tau", "task_type")
_CALL_KWARGS: Final = frozenset({*_SAMPLING, "tools", "tool_choice", "response_format", "model", "stream"})


class BackendLoop(StrEnum):
    """Which event loop runs the backend (see the module docstring)."""

    PRIVATE = "private"
    CALLER = "caller"


class ChatPIPO(BaseChatModel):
    """A chat model over a pipo-agent backend (by default the embedded PIPO engine); see the module docstring."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, arbitrary_types_allowed=True)

    model: str = Field(default="pipo-default", alias="model_name")
    """A name in ``DEFAULT_MODELS`` without ``backend``; with one, a label for traces and metadata."""
    backend: ChatBackend | None = Field(default=None, exclude=True)
    backend_loop: BackendLoop = BackendLoop.PRIVATE
    temperature: float | None = None  # None: the backend's default (greedy for the engine)
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = None
    max_tokens: int | None = None  # None: the backend's default (1024 for the engine)
    stop: list[str] | None = None
    timeout: float | None = None  # seconds for a whole call, re-asks included
    max_retries: int = Field(default=2, ge=0)  # re-asks when a turn breaks tool_choice / response_format
    streaming: bool = False  # invoke() streams internally (callbacks see tokens)
    tau: float | None = None  # PIPO's draft acceptance threshold; None: the backend's default (0.9)
    task_type: str | None = None  # a label for per-task thresholds and traces

    @model_validator(mode="after")
    def _known_model(self) -> Self:
        if self.backend is None and self.model not in DEFAULT_MODELS:
            raise ValueError(
                f"model {self.model!r} needs a backend; without one, valid: {', '.join(DEFAULT_MODELS)}"
            )
        if self.backend is None and self.backend_loop is BackendLoop.CALLER:
            raise ValueError("backend_loop='caller' needs a backend that runs on your event loop")
        return self

    # ---- identity ----

    @property
    def _llm_type(self) -> str:
        return "pipo"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        params = {"model_name": self.model, **{name: getattr(self, name) for name in _SAMPLING}}
        if self.backend is not None:
            params["backend"] = type(self.backend).__name__
        return params

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = super()._get_ls_params(stop=stop, **kwargs)
        if "ls_stop" not in params and self.stop:
            params["ls_stop"] = self.stop
        return params

    # ---- tools and structured output ----

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | dict[str, Any] | bool | None = None,
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """``tools`` as OpenAI-style schemas; ``tool_choice`` is "auto", "none", "any"/"required" or a tool name
        (checked now: a name that is not bound raises ``ValueError``)."""
        formatted = [convert_to_openai_tool(tool, strict=strict) for tool in tools]
        ToolChoice.parse(tool_choice, formatted)
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
        return self.bind(tools=formatted, **kwargs)

    def with_structured_output(
        self,
        schema: dict[str, Any] | type,
        *,
        method: StructuredMethod = "json_schema",
        include_raw: bool = False,
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, Any]:
        """See :mod:`pipo_agent.langchain._structured`; the default ``json_schema`` parses the answer text."""
        if kwargs:
            raise ValueError(f"Received unsupported arguments {kwargs}")
        return structured_output(self, schema, method=method, include_raw=include_raw, strict=strict)

    # ---- generation ----

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        call = self._prepare(messages, stop, kwargs)
        if self.backend_loop is BackendLoop.CALLER:
            assert self.backend is not None  # checked by the validator
            return await generate(self.backend, call)
        return await self._host(call.model_name).acall(partial(generate, call=call))

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        call = self._prepare(messages, stop, kwargs)
        if self.backend_loop is BackendLoop.CALLER:
            assert self.backend is not None  # checked by the validator
            chunks = stream_chunks(self.backend, call)
        else:
            chunks = self._host(call.model_name).aiterate(partial(stream_chunks, call=call))
        async with aclosing(chunks):  # type: ignore[type-var]  # async generators have aclose
            async for chunk in chunks:
                if run_manager is not None:
                    await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                yield chunk

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        call = self._prepare(messages, stop, kwargs)
        return self._sync_host(call).call(partial(generate, call=call))

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        call = self._prepare(messages, stop, kwargs)
        chunks = self._sync_host(call).iterate(partial(stream_chunks, call=call))
        with closing(chunks):  # type: ignore[type-var]  # generators have close
            for chunk in chunks:
                if run_manager is not None:
                    run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                yield chunk

    def _prepare(
        self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]
    ) -> TurnCall:
        """The call's request and rules, checked here, in the caller's thread, before any work starts."""
        unknown = set(kwargs) - _CALL_KWARGS
        if unknown:
            raise TypeError(
                f"ChatPIPO got unknown arguments {sorted(unknown)}; valid: {sorted(_CALL_KWARGS)}"
            )
        model = kwargs.get("model") or self.model
        if model != self.model and (self.backend is not None or model not in DEFAULT_MODELS):
            valid = [self.model] if self.backend is not None else list(DEFAULT_MODELS)
            raise ValueError(f"model {model!r} is not served here; valid: {', '.join(valid)}")
        tools = [convert_to_openai_tool(tool) for tool in kwargs.get("tools") or ()]
        rules = TurnRules(
            tools=tools,
            tool_choice=ToolChoice.parse(kwargs.get("tool_choice"), tools),
            response_format=parse_response_format(kwargs.get("response_format")),
        )
        given = {name: kwargs.get(name, getattr(self, name)) for name in _SAMPLING}
        stops = stop if stop is not None else self.stop
        sampling = SamplingSettings(**given, stop=list(stops or ()))
        history = rules.instructed(from_langchain(messages))
        request = ChatRequest(messages=history, tools=rules.shown_tools, sampling=sampling)
        return TurnCall(
            request=request,
            rules=rules,
            model_name=model,
            max_retries=self.max_retries,
            timeout=self.timeout,
            v1=self.output_version == "v1",
        )

    # ---- where the backend runs ----

    def _host(self, model: str) -> LoopThread[ChatBackend]:
        if self.backend is not None:
            return _backend_host(self.backend)
        return _default_host(model)

    def _sync_host(self, call: TurnCall) -> LoopThread[ChatBackend]:
        if self.backend_loop is BackendLoop.CALLER:
            raise AgentUsageError(
                "ChatPIPO(backend_loop='caller') serves async calls only (ainvoke, astream, abatch): its backend "
                "runs on your event loop, which a sync call cannot use"
            )
        return self._host(call.model_name)

    def close(self) -> None:
        """Stop this model's backend (cancelling calls in flight); a later call starts it again. For a default
        model this stops the engine that every ChatPIPO of that name shares."""
        if self.backend_loop is BackendLoop.PRIVATE:
            _close_host(self.backend if self.backend is not None else self.model)

    async def aclose(self) -> None:
        await anyio.to_thread.run_sync(self.close)


# ---- the process's hosts: one per default model name, one per backend given ----

_LOCK = threading.Lock()
_HOSTS: dict[object, LoopThread[ChatBackend]] = {}  # model name or id(backend) -> host


def _default_host(model: str) -> LoopThread[ChatBackend]:
    with _LOCK:
        host = _HOSTS.get(model)
        if host is None:
            host = _HOSTS[model] = LoopThread(
                partial(_default_backend, DEFAULT_MODELS[model]), name=f"ChatPIPO {model}"
            )
        return host


def _backend_host(backend: ChatBackend) -> LoopThread[ChatBackend]:
    with _LOCK:  # keyed by identity: the host keeps the backend alive until it is closed
        host = _HOSTS.get(id(backend))
        if host is None:
            name = f"ChatPIPO {type(backend).__name__}"
            host = _HOSTS[id(backend)] = LoopThread(partial(_entered, backend), name=name)
        return host


def _close_host(key: str | ChatBackend) -> None:
    with _LOCK:
        host = _HOSTS.pop(key if isinstance(key, str) else id(key), None)
    if host is not None:
        host.close()


@atexit.register
def _close_all_hosts() -> None:
    """Stop the engines cleanly at exit (their threads are daemons, so this is a courtesy, not a need)."""
    with _LOCK:
        hosts = list(_HOSTS.values())
        _HOSTS.clear()
    for host in hosts:
        host.close()


@asynccontextmanager
async def _default_backend(mode: str) -> AsyncIterator[ChatBackend]:
    from pipo_agent.backends.engine.chat_backend import EngineBackend  # torch: only when a default model runs

    backend = await anyio.to_thread.run_sync(partial(EngineBackend.from_default, mode=mode))
    async with backend:
        yield backend


@asynccontextmanager
async def _entered(backend: ChatBackend) -> AsyncIterator[ChatBackend]:
    async with backend:
        yield backend
