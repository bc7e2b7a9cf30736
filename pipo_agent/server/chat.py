"""``POST /v1/chat/completions``: OpenAI's chat endpoint over the engine, with reasoning and tool calls.

The history is rendered in the model's chat template (the turn starts inside ``<think>``), and the generated
text goes through the same :class:`~pipo_agent.chat_format.StreamParser` as the embedded backend's: reasoning
becomes ``reasoning_content``, each complete ``<tool_call>`` block one entry of ``tool_calls``, the rest
``content``. A stream sends a role chunk, deltas in generation order, a chunk with ``finish_reason``, the usage
chunk when ``stream_options.include_usage`` is set, and ``[DONE]``; a failure after the start is sent as an
``{"error": ...}`` event before ``[DONE]``.
"""

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, assert_never

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from pipo_agent.backend import ReasoningDelta, TextDelta, ToolCallDelta
from pipo_agent.chat_format import ParsedEvent, StreamParser, render_prompt
from pipo_agent.messages import InvalidToolCall, ToolCall
from pipo_agent.server.convert import (
    TurnUsage,
    finish_reason_of,
    prompt_tools,
    to_messages,
    tool_call_wire,
    usage_body,
)
from pipo_agent.server.errors import APIError
from pipo_agent.server.protocol import ChatCompletionRequest
from pipo_agent.server.responses import (
    DONE,
    AdmittedStream,
    ResponseContext,
    check_model,
    run_unless_disconnected,
    sse,
    sse_error,
)
from pipo_agent.server.service import EngineService, Finished, Piece, TextPiece, sampling_params

__all__ = ["router"]

router = APIRouter()


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
    service: EngineService = request.app.state.service
    check_model(body.model, service.config)
    params = sampling_params(body, service.config)
    prompt = render_prompt(to_messages(body.messages), prompt_tools(body))
    prompt_ids = await service.encode(prompt)
    service.validate(prompt_ids, params)
    context = ResponseContext("chatcmpl", body.model)
    if body.stream:
        ticket = service.admit()
        pieces = service.generate(prompt_ids, params)
        tau = service.tau_used(params)
        events = _stream(service, context, pieces, len(prompt_ids), tau, include_usage=body.include_usage)
        return AdmittedStream(events, ticket.release)
    with service.admit():
        turn = await run_unless_disconnected(
            request, lambda: _collect(service, service.generate(prompt_ids, params))
        )
    if turn is None:
        return Response(status_code=499)  # the client closed the request; nobody reads this
    usage = await _usage(service, turn, len(prompt_ids), service.tau_used(params))
    return JSONResponse(_completion(context, turn, usage))


@dataclass
class _Turn:
    reasoning: list[str] = field(default_factory=list)
    text: list[str] = field(default_factory=list)
    calls: list[ToolCall | InvalidToolCall] = field(default_factory=list)
    finished: Finished | None = None

    def add(self, events: Sequence[ParsedEvent]) -> None:
        for event in events:
            if isinstance(event, ReasoningDelta):
                self.reasoning.append(event.text)
            elif isinstance(event, TextDelta):
                self.text.append(event.text)
            elif isinstance(event, ToolCallDelta):
                self.calls.append(event.call)
            else:
                assert_never(event)

    @property
    def finish_reason(self) -> str:
        assert self.finished is not None
        return finish_reason_of(self.finished.finish_reason, bool(self.calls))


async def _collect(service: EngineService, pieces: AsyncIterator[Piece]) -> _Turn:
    turn, parser = _Turn(), StreamParser(in_reasoning=True)
    try:
        async for piece in pieces:
            if isinstance(piece, TextPiece):
                turn.add(parser.feed(piece.text))
            else:
                turn.finished = piece
    finally:
        await pieces.aclose()  # type: ignore[attr-defined]
    turn.add(parser.finish())
    return turn


async def _usage(service: EngineService, turn: _Turn, prompt_tokens: int, tau: float | None) -> TurnUsage:
    """The engine's counts; reasoning tokens re-tokenized from the reasoning text (a tag may straddle two
    generated tokens, so the engine's tokens are not split by channel)."""
    assert turn.finished is not None
    stats, decode = turn.finished.stats, turn.finished.stats.decode
    reasoning = "".join(turn.reasoning)
    reasoning_tokens = len(await service.encode(reasoning)) if reasoning else 0
    return TurnUsage(
        prompt_tokens=prompt_tokens,
        completion_tokens=decode.tokens,
        reasoning_tokens=min(reasoning_tokens, decode.tokens),
        steps=decode.steps,
        drafts_proposed=decode.drafts_proposed,
        drafts_committed=decode.drafts_committed,
        tokens_per_step=decode.tokens_per_step,
        tau=tau,
        prefix_cached_tokens=stats.prefix_cached_tokens,
    )


def _completion(context: ResponseContext, turn: _Turn, usage: TurnUsage) -> dict[str, Any]:
    text = "".join(turn.text)
    message: dict[str, Any] = {
        "role": "assistant",
        "content": text if text or not turn.calls else None,
        "reasoning_content": "".join(turn.reasoning) if turn.reasoning else None,
    }
    if turn.calls:
        message["tool_calls"] = [tool_call_wire(call) for call in turn.calls]
    return {
        "id": context.id,
        "object": "chat.completion",
        "created": context.created,
        "model": context.model,
        "choices": [{"index": 0, "message": message, "finish_reason": turn.finish_reason, "logprobs": None}],
        "usage": usage_body(usage),
    }


async def _stream(
    service: EngineService,
    context: ResponseContext,
    pieces: AsyncIterator[Piece],
    prompt_tokens: int,
    tau: float | None,
    *,
    include_usage: bool,
) -> AsyncIterator[str]:
    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> str:
        payload: dict[str, Any] = {
            "id": context.id,
            "object": "chat.completion.chunk",
            "created": context.created,
            "model": context.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}],
        }
        if include_usage:
            payload["usage"] = None
        return sse(payload)

    turn, parser = _Turn(), StreamParser(in_reasoning=True)

    def deltas(events: Sequence[ParsedEvent]) -> list[str]:
        out = []
        for event in events:
            if isinstance(event, ReasoningDelta):
                out.append(chunk({"reasoning_content": event.text}))
            elif isinstance(event, TextDelta):
                out.append(chunk({"content": event.text}))
            else:
                out.append(chunk({"tool_calls": [tool_call_wire(event.call, index=len(turn.calls))]}))
            turn.add([event])
        return out

    try:
        yield chunk({"role": "assistant", "content": ""})
        async for piece in pieces:
            if isinstance(piece, TextPiece):
                for text in deltas(parser.feed(piece.text)):
                    yield text
            else:
                turn.finished = piece
        for text in deltas(parser.finish()):
            yield text
        yield chunk({}, turn.finish_reason)
        if include_usage:
            usage = await _usage(service, turn, prompt_tokens, tau)
            yield sse({**_chunk_head(context), "choices": [], "usage": usage_body(usage)})
    except APIError as exc:
        yield sse_error(exc)
    finally:
        await pieces.aclose()  # type: ignore[attr-defined]
    yield DONE


def _chunk_head(context: ResponseContext) -> dict[str, Any]:
    return {
        "id": context.id,
        "object": "chat.completion.chunk",
        "created": context.created,
        "model": context.model,
    }
