"""``POST /v1/completions``: raw prompt text in, raw generated text out (no chat template, no parsing)."""

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from pipo_agent.server.convert import TurnUsage, usage_body
from pipo_agent.server.errors import APIError
from pipo_agent.server.protocol import CompletionRequest
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


@router.post("/v1/completions", response_model=None)
async def completions(body: CompletionRequest, request: Request) -> Response:
    service: EngineService = request.app.state.service
    check_model(body.model, service.config)
    params = sampling_params(body, service.config)
    prompt_ids = await service.encode(body.prompt_text)
    service.validate(prompt_ids, params)
    context = ResponseContext("cmpl", body.model)
    tau = service.tau_used(params)
    if body.stream:
        ticket = service.admit()
        pieces = service.generate(prompt_ids, params)
        return AdmittedStream(
            _stream(context, pieces, len(prompt_ids), tau, body.include_usage), ticket.release
        )
    with service.admit():
        result = await run_unless_disconnected(
            request, lambda: _collect(service.generate(prompt_ids, params))
        )
    if result is None:
        return Response(status_code=499)  # the client closed the request; nobody reads this
    text, finished = result
    return JSONResponse(
        {
            **_head(context),
            "choices": [_choice(text, finished.finish_reason)],
            "usage": usage_body(_usage(finished, len(prompt_ids), tau)),
        }
    )


def _head(context: ResponseContext) -> dict[str, Any]:
    return {"id": context.id, "object": "text_completion", "created": context.created, "model": context.model}


def _choice(text: str, finish_reason: str | None) -> dict[str, Any]:
    return {"index": 0, "text": text, "finish_reason": finish_reason, "logprobs": None}


def _usage(finished: Finished, prompt_tokens: int, tau: float | None) -> TurnUsage:
    decode = finished.stats.decode
    return TurnUsage(
        prompt_tokens=prompt_tokens,
        completion_tokens=decode.tokens,
        reasoning_tokens=0,
        steps=decode.steps,
        drafts_proposed=decode.drafts_proposed,
        drafts_committed=decode.drafts_committed,
        tokens_per_step=decode.tokens_per_step,
        tau=tau,
        prefix_cached_tokens=finished.stats.prefix_cached_tokens,
    )


async def _collect(pieces: AsyncIterator[Piece]) -> tuple[str, Finished]:
    text: list[str] = []
    finished = None
    try:
        async for piece in pieces:
            if isinstance(piece, TextPiece):
                text.append(piece.text)
            else:
                finished = piece
    finally:
        await pieces.aclose()  # type: ignore[attr-defined]
    assert finished is not None  # generate() ends with Finished or raises
    return "".join(text), finished


async def _stream(
    context: ResponseContext,
    pieces: AsyncIterator[Piece],
    prompt_tokens: int,
    tau: float | None,
    include_usage: bool,
) -> AsyncIterator[str]:
    extra: dict[str, Any] = {"usage": None} if include_usage else {}
    try:
        async for piece in pieces:
            if isinstance(piece, TextPiece):
                yield sse({**_head(context), "choices": [_choice(piece.text, None)], **extra})
            else:
                yield sse({**_head(context), "choices": [_choice("", piece.finish_reason)], **extra})
                if include_usage:
                    usage = usage_body(_usage(piece, prompt_tokens, tau))
                    yield sse({**_head(context), "choices": [], "usage": usage})
    except APIError as exc:
        yield sse_error(exc)
    finally:
        await pieces.aclose()  # type: ignore[attr-defined]
    yield DONE
