"""The FastAPI application: routes, authentication, error answers in OpenAI's shape, and the engine's lifetime.

Routes: ``POST /v1/chat/completions``, ``POST /v1/completions``, ``GET /v1/models``, ``GET /metrics``
(Prometheus text) and ``GET /health`` (200 ``ok`` with the engine's queue sizes, 503 while draining; no
key needed, for load balancers and container health checks). With an API key, every other route needs
``Authorization: Bearer <key>``.

The app's lifespan runs the :class:`~pipo_agent.backends.engine.async_engine.AsyncEngine` over the given
engine; every request error is a JSON ``{"error": {...}}`` with a 4xx status, and the server keeps serving.
"""

import logging
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from pipo_agent.backends.engine.async_engine import AsyncEngine
from pipo_agent.backends.engine.llm_engine import LLMEngine
from pipo_agent.server import chat, completions
from pipo_agent.server.config import ServerConfig
from pipo_agent.server.errors import APIError, AuthenticationError, EngineFailedError, InvalidRequestError
from pipo_agent.server.metrics import CONTENT_TYPE, ServerMetrics
from pipo_agent.server.middleware import BodyLimit, CountRequests
from pipo_agent.server.service import EngineService, Tokenizer, engine_state

__all__ = ["create_app"]

logger = logging.getLogger(__name__)

ENDPOINTS = frozenset({"/v1/chat/completions", "/v1/completions", "/v1/models", "/health", "/metrics"})


def create_app(config: ServerConfig, engine: LLMEngine, tokenizer: Tokenizer) -> FastAPI:
    """The app over a loaded engine; the engine runs while the app's lifespan does (uvicorn starts it)."""
    metrics = ServerMetrics(lambda: engine_state(engine))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncEngine(engine) as running:
            app.state.service = EngineService(running, tokenizer, config, metrics)
            yield

    app = FastAPI(title="pipo-agent", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.config = config
    app.state.metrics = metrics
    auth = [Depends(_authenticate)] if config.api_key is not None else []
    app.include_router(chat.router, dependencies=auth)
    app.include_router(completions.router, dependencies=auth)
    app.add_api_route("/v1/models", _models, methods=["GET"], dependencies=auth)
    app.add_api_route("/metrics", _metrics, methods=["GET"], dependencies=auth)
    app.add_api_route("/health", _health, methods=["GET"])
    _add_error_handlers(app)
    app.add_middleware(BodyLimit, max_bytes=config.max_body_bytes)
    app.add_middleware(
        CountRequests, count=lambda e, s: metrics.requests.labels(e, str(s)).inc(), endpoints=ENDPOINTS
    )
    app.state.started = int(time.time())
    return app


def _authenticate(request: Request) -> None:
    config: ServerConfig = request.app.state.config
    assert config.api_key is not None
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    expected = config.api_key.get_secret_value()
    if scheme.lower() != "bearer" or not secrets.compare_digest(given.strip().encode(), expected.encode()):
        raise AuthenticationError(
            "a valid API key is required: send 'Authorization: Bearer <key>'", code="invalid_api_key"
        )


async def _models(request: Request) -> dict[str, Any]:
    config: ServerConfig = request.app.state.config
    model = {
        "id": config.served_model_name,
        "object": "model",
        "created": request.app.state.started,
        "owned_by": "pipo-agent",
    }
    return {"object": "list", "data": [model]}


async def _metrics(request: Request) -> Response:
    return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE)


async def _health(request: Request) -> JSONResponse:
    service: EngineService | None = getattr(request.app.state, "service", None)
    if service is None:
        return JSONResponse({"status": "starting"}, status_code=503)
    status = "draining" if service.draining else "ok"
    body = {"status": status, "model": service.config.served_model_name, "engine": service.engine_state()}
    return JSONResponse(body, status_code=503 if service.draining else 200)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def api_error(request: Request, exc: APIError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status_code, headers=exc.headers())

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        problems = []
        for error in errors:
            where = ".".join(str(part) for part in error["loc"] if part != "body") or "body"
            problems.append(f"{where}: {error['msg'].removeprefix('Value error, ')}")
        first = errors[0]["loc"] if errors else ()
        param = ".".join(str(part) for part in first if part != "body") or None
        error = InvalidRequestError("invalid request: " + " | ".join(problems), param=param)
        return await api_error(request, error)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        kind = InvalidRequestError if exc.status_code < 500 else EngineFailedError
        error = kind(str(exc.detail))
        return JSONResponse(error.body(), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("request failed: %s %s", request.method, request.url.path)
        error = EngineFailedError(f"internal error: {type(exc).__name__}")
        return JSONResponse(error.body(), status_code=500)
