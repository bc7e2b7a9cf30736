"""The embedded engine behind the agent's backend protocol: :class:`EngineBackend`.

A request's history and tool schemas are rendered with :func:`~pipo_agent.chat_format.render_prompt`
(ending in ``<|im_start|>assistant\\n<think>\\n``, so the turn starts inside reasoning) and tokenized
without special-token additions; the engine's text deltas go through a
:class:`~pipo_agent.chat_format.StreamParser` into typed events. The turn ends with a ``UsageEvent``:

- ``prompt_tokens``: the rendered prompt; ``completion_tokens``: real generated tokens, the stopping EOS
  included (the engine's ``DecodeStats.tokens``), so ``tokens_per_step`` is the engine's own;
- ``reasoning_tokens``: the tokens of the reasoning text, re-tokenized (the engine's tokens are not split
  by channel; a tag may straddle two of them);
- ``steps``, ``drafts_proposed``, ``drafts_committed``, ``tau``: PIPO's decode statistics.

Torch never runs on the event loop: the :class:`~pipo_agent.backends.engine.async_engine.AsyncEngine`
steps the model in a worker thread, and tokenizing happens in one too. Engine and sampling errors are
raised as :class:`~pipo_agent.errors.BackendError`.
"""

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final, Protocol, Self, cast

import anyio

from pipo_agent.backend import (
    ChatBackend,
    ChatRequest,
    FinishEvent,
    ReasoningDelta,
    SamplingSettings,
    StreamEvent,
    UsageEvent,
)
from pipo_agent.backends.decode.errors import DecodeError
from pipo_agent.backends.decode.sampling import SamplingParams
from pipo_agent.backends.engine.async_engine import AsyncEngine
from pipo_agent.backends.engine.errors import EngineError
from pipo_agent.backends.engine.llm_engine import RequestOutput, load_engine
from pipo_agent.chat_format import StreamParser, render_prompt
from pipo_agent.errors import BackendError
from pipo_agent.messages import FinishReason, Usage

__all__ = ["DEFAULT_MAX_TOKENS", "DEFAULT_TAU", "EngineBackend", "sampling_params"]

DEFAULT_TAU: Final = 0.9
DEFAULT_MAX_TOKENS: Final = 1024


class Tokenizer(Protocol):
    def __call__(self, text: str, *, add_special_tokens: bool) -> Any: ...


def sampling_params(
    settings: SamplingSettings, *, default_max_tokens: int = DEFAULT_MAX_TOKENS
) -> SamplingParams:
    """The engine's parameters for the protocol's settings (``None`` leaves the engine's default; ``tau``
    defaults to 0.9). Raises ``BackendError`` for values the engine cannot honour (e.g. ``tau`` outside
    [-1, 1])."""
    given: dict[str, Any] = {
        "temperature": settings.temperature,
        "top_p": settings.top_p,
        "top_k": settings.top_k,
        "seed": settings.seed,
    }
    values = {name: value for name, value in given.items() if value is not None}
    try:
        return SamplingParams(
            **values,
            stop=tuple(settings.stop),
            max_new_tokens=settings.max_tokens if settings.max_tokens is not None else default_max_tokens,
            tau=settings.tau if settings.tau is not None else DEFAULT_TAU,
        )
    except DecodeError as exc:
        raise BackendError(f"the engine cannot use these sampling settings: {exc}") from exc


class EngineBackend(ChatBackend):
    """A :class:`ChatBackend` over an :class:`AsyncEngine` and its tokenizer.

    Give a running engine (caller-owned), or use :meth:`from_default`, whose engine this backend owns and
    starts in ``async with`` (stopped by ``aclose``). ``max_tokens`` is the turn length when a request
    leaves it unset.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        tokenizer: Tokenizer,
        *,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        owns_engine: bool = False,
    ) -> None:
        self.engine = engine
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens
        self._owns_engine = owns_engine
        self._started = False

    @classmethod
    def from_default(
        cls,
        *,
        model_dir: str | Path | None = None,
        device: str = "cpu",
        mode: str = "pipo",
        max_tokens: int = DEFAULT_MAX_TOKENS,
        **engine_options: Any,
    ) -> "EngineBackend":
        """The shipped default model (or ``model_dir``) on ``device``; ``engine_options`` go to the engine
        config (e.g. ``kv_cache_bytes``). Loading takes seconds and blocks: from async code, call it with
        ``anyio.to_thread.run_sync``. Start it with ``async with``."""
        engine, tokenizer = load_engine(model_dir, mode=mode, device=device, **engine_options)
        return cls(AsyncEngine(engine), cast(Tokenizer, tokenizer), max_tokens=max_tokens, owns_engine=True)

    async def __aenter__(self) -> Self:
        if self._owns_engine and not self._started:
            await self.engine.__aenter__()
            self._started = True
        return self

    async def aclose(self) -> None:
        if self._started:
            self._started = False
            await self.engine.__aexit__(None, None, None)

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        params = sampling_params(request.sampling, default_max_tokens=self.max_tokens)
        prompt = render_prompt(request.messages, request.tools)
        prompt_ids = await anyio.to_thread.run_sync(self._encode, prompt)
        try:
            outputs = self.engine.stream(prompt_ids, params)
        except (EngineError, DecodeError) as exc:
            raise BackendError(f"the engine refused the request: {exc}") from exc
        parser = StreamParser(in_reasoning=True)
        reasoning: list[str] = []
        last: RequestOutput | None = None
        try:
            async for output in outputs:
                last = output
                for event in parser.feed(output.text_delta):
                    if isinstance(event, ReasoningDelta):
                        reasoning.append(event.text)
                    yield event
        except EngineError as exc:
            raise BackendError(f"the engine failed: {exc}") from exc
        finally:
            await _aclose_outputs(outputs)  # frees the engine's request if the turn was cut
        for event in parser.finish():
            if isinstance(event, ReasoningDelta):
                reasoning.append(event.text)
            yield event
        if last is None or last.result is None or not last.finished:
            raise BackendError("the engine's stream ended without a finished result")
        reasoning_tokens = (
            len(await anyio.to_thread.run_sync(self._encode, "".join(reasoning))) if reasoning else 0
        )
        tau = params.tau if self.engine.engine.is_pipo else None  # an AR engine drafts nothing
        yield UsageEvent(usage=_usage(len(prompt_ids), reasoning_tokens, last, tau))
        yield FinishEvent(finish_reason=_finish_reason(last.finish_reason))

    def _encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])


async def _aclose_outputs(outputs: AsyncIterator[RequestOutput]) -> None:
    aclose = getattr(outputs, "aclose", None)  # AsyncEngine.stream returns an async generator
    if aclose is not None:
        await aclose()


def _usage(prompt_tokens: int, reasoning_tokens: int, output: RequestOutput, tau: float | None) -> Usage:
    assert output.result is not None
    stats = output.result.stats
    return Usage(
        prompt_tokens=prompt_tokens,
        completion_tokens=stats.tokens,
        reasoning_tokens=min(reasoning_tokens, stats.tokens),
        steps=stats.steps,
        drafts_proposed=stats.drafts_proposed,
        drafts_committed=stats.drafts_committed,
        tokens_per_step=stats.tokens_per_step,
        tau=tau,
    )


def _finish_reason(reason: str | None) -> FinishReason:
    try:
        return FinishReason(reason or "")
    except ValueError:
        raise BackendError(f"the engine finished the turn with {reason!r}") from None
