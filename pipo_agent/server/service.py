"""The engine as the endpoints see it: admission (back-pressure), tokenizing, generation with metrics, draining.

Admission bounds the work the server takes on: ``max_num_seqs`` requests run and ``max_queue`` wait; one
more is refused at once with 429 and ``Retry-After`` rather than queued without bound (a queue the engine
cannot drain only turns into client timeouts). A request holds its admission until its response ends, so a
client that disconnects frees its place and, through the engine stream's cleanup, its KV blocks.

Draining: :meth:`EngineService.begin_drain` (on SIGTERM/SIGINT) refuses new requests with 503 and lets
running ones finish for ``grace_period_s``; a request still generating then is cut off (its stream ends
with an error event and ``[DONE]``) and aborted in the engine.
"""

import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import anyio

from pipo_agent.backends.decode.errors import DecodeError, SamplingParamsError
from pipo_agent.backends.decode.sampling import SamplingParams
from pipo_agent.backends.engine.async_engine import AsyncEngine, EngineClosedError
from pipo_agent.backends.engine.errors import ContextLengthError, RequestError
from pipo_agent.backends.engine.llm_engine import LLMEngine, RequestStats
from pipo_agent.server.config import ServerConfig
from pipo_agent.server.errors import (
    EngineFailedError,
    InvalidRequestError,
    OverloadedError,
    ShuttingDownError,
)
from pipo_agent.server.metrics import ServerMetrics
from pipo_agent.server.protocol import ChatCompletionRequest, CompletionRequest

__all__ = ["EngineService", "Finished", "Piece", "TextPiece", "Ticket", "engine_state", "sampling_params"]


class Tokenizer(Protocol):
    def __call__(self, text: str, *, add_special_tokens: bool) -> Any: ...


@dataclass(frozen=True)
class TextPiece:
    text: str


@dataclass(frozen=True)
class Finished:
    finish_reason: str  # "stop" or "length"
    stats: RequestStats


Piece = TextPiece | Finished


def sampling_params(
    request: ChatCompletionRequest | CompletionRequest, config: ServerConfig
) -> SamplingParams:
    """The engine's parameters for a request; out-of-range values are a 400 that names the valid range."""
    max_tokens = request.token_limit if request.token_limit is not None else config.default_max_tokens
    if max_tokens > config.max_tokens_limit:
        raise InvalidRequestError(
            f"max_tokens={max_tokens} is over this server's limit of {config.max_tokens_limit}",
            param="max_tokens",
        )
    given: dict[str, Any] = {
        "temperature": request.temperature if request.temperature is not None else config.default_temperature,
        "top_p": request.top_p,
        "top_k": request.top_k,
        "presence_penalty": request.presence_penalty,
        "seed": request.seed,
    }
    tau = request.tau if request.tau is not None else config.tau_for(request.task_type)
    try:
        return SamplingParams(
            **{name: value for name, value in given.items() if value is not None},
            stop=request.stop_strings(),
            max_new_tokens=max_tokens,
            tau=tau,
        )
    except SamplingParamsError as exc:
        param = next((name for name in (*given, "stop", "tau") if f": {name}=" in str(exc)), None)
        raise InvalidRequestError(str(exc), param=param) from exc


def engine_state(engine: LLMEngine) -> dict[str, int]:
    """Sizes only, for monitoring: read on the event loop while a step may run in the worker thread."""
    scheduler = engine.scheduler
    return {
        "running": len(scheduler.running),
        "waiting": len(scheduler.waiting),
        "unfinished": engine.num_unfinished,
        "free_blocks": scheduler.block_manager.num_free_blocks,
        "total_blocks": scheduler.block_manager.num_blocks,
    }


class Ticket:
    """One admitted request's place; :meth:`release` (or leaving ``with``) gives it back, once."""

    def __init__(self, release: Callable[[], None]) -> None:
        self._release: Callable[[], None] | None = release

    def release(self) -> None:
        release, self._release = self._release, None
        if release is not None:
            release()

    def __enter__(self) -> "Ticket":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


class EngineService:
    def __init__(
        self, engine: AsyncEngine, tokenizer: Tokenizer, config: ServerConfig, metrics: ServerMetrics
    ) -> None:
        self.engine = engine
        self.tokenizer = tokenizer
        self.config = config
        self.metrics = metrics
        self._admitted = 0
        self._drain_deadline: float | None = None
        self._tokenizer_lock = threading.Lock()  # a fast tokenizer is not safe for concurrent calls

    @property
    def is_pipo(self) -> bool:
        return bool(self.engine.engine.is_pipo)

    # ---- admission and draining ----

    def admit(self) -> "Ticket":
        """Hold a place for one request until the ticket is released, or raise 503 (draining) / 429 (full)."""
        retry = self.config.retry_after_s
        if self.draining:
            raise ShuttingDownError(
                "the server is shutting down; retry on another instance", retry_after_s=retry
            )
        if self._admitted >= self.config.max_admitted:
            raise OverloadedError(
                f"the server is at capacity ({self._admitted} requests running or queued); retry after {retry} s",
                code="overloaded",
                retry_after_s=retry,
            )
        self._admitted += 1
        self.metrics.in_flight.inc()
        return Ticket(self._release)

    def _release(self) -> None:
        self._admitted -= 1
        self.metrics.in_flight.dec()

    def begin_drain(self) -> None:
        """Refuse new requests from now on and cut running ones off after the grace period (idempotent)."""
        if self._drain_deadline is None:
            self._drain_deadline = time.monotonic() + self.config.grace_period_s

    @property
    def draining(self) -> bool:
        return self._drain_deadline is not None

    def _cut_off(self) -> bool:
        return self._drain_deadline is not None and time.monotonic() >= self._drain_deadline

    def engine_state(self) -> dict[str, int]:
        return {**engine_state(self.engine.engine), "admitted": self._admitted}

    # ---- tokens ----

    async def encode(self, text: str) -> list[int]:
        return await anyio.to_thread.run_sync(self._encode, text)

    def _encode(self, text: str) -> list[int]:
        with self._tokenizer_lock:
            return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    # ---- generation ----

    def validate(self, prompt_ids: Sequence[int], params: SamplingParams) -> None:
        """Raise a request's errors (a prompt over the context, a bad token id) before anything is queued:
        a response must not start before they are known."""
        try:
            self.engine.engine.make_request(prompt_ids, params)
        except ContextLengthError as exc:
            raise InvalidRequestError(str(exc), param="messages", code="context_length_exceeded") from exc
        except (RequestError, DecodeError) as exc:
            raise InvalidRequestError(str(exc)) from exc

    def tau_used(self, params: SamplingParams) -> float | None:
        """The ``tau`` a request ran with; None on the AR engine, which drafts nothing."""
        return params.tau if self.is_pipo else None

    async def generate(self, prompt_ids: Sequence[int], params: SamplingParams) -> AsyncIterator[Piece]:
        """Text deltas, then one :class:`Finished`. Leaving early aborts the request and frees its KV."""
        started = time.perf_counter()
        try:
            outputs = self.engine.stream(prompt_ids, params)
        except (RequestError, DecodeError) as exc:
            raise InvalidRequestError(str(exc)) from exc
        except EngineClosedError as exc:
            raise EngineFailedError(f"the engine is not running: {exc}") from exc
        first = True
        finished = None
        try:
            async for output in outputs:
                if output.text_delta:
                    if first:
                        self.metrics.ttft.observe(time.perf_counter() - started)
                        first = False
                    yield TextPiece(output.text_delta)
                if output.finished:
                    finished = output
                    break
                if self._cut_off():
                    raise ShuttingDownError(
                        "the server shut down before the request finished; it was cut off"
                    )
        except EngineClosedError as exc:
            raise EngineFailedError(f"the engine failed: {exc}") from exc
        finally:
            await outputs.aclose()  # type: ignore[attr-defined,unused-ignore]  # an async generator: frees it
            if finished is None:
                self.metrics.finished.labels("abort").inc()
        if finished is None:
            raise EngineFailedError("the engine's stream ended without a result")
        if finished.stats is None or finished.finish_reason not in ("stop", "length"):
            raise EngineFailedError(f"the engine ended the request with {finished.finish_reason!r}")
        self._record(len(prompt_ids), finished.finish_reason, finished.stats)
        yield Finished(finished.finish_reason, finished.stats)

    def _record(self, prompt_tokens: int, reason: str, stats: RequestStats) -> None:
        m, decode = self.metrics, stats.decode
        m.finished.labels(reason).inc()
        m.prompt_tokens.inc(prompt_tokens)
        m.generated_tokens.inc(decode.tokens)
        if decode.tpot_s is not None:
            m.tpot.observe(decode.tpot_s)
        if self.is_pipo:
            m.drafts_proposed.inc(decode.drafts_proposed)
            m.drafts_committed.inc(decode.drafts_committed)
            m.tokens_per_step.observe(decode.tokens_per_step)
