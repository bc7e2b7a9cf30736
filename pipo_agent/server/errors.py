"""Errors of the HTTP server. Request errors are answered in OpenAI's error shape; the server keeps serving.

ServerError
├── ServerConfigError        misuse, raised at startup before anything loads: a non-loopback host without an
│                            API key, an unknown engine, a missing checkpoint; the message says what to change
├── EngineUnavailableError   the chosen engine cannot run here (``--engine sglang`` without the pinned SGLang)
└── APIError                 one request failed; answered as ``{"error": {"message", "type", "param", "code"}}``
    ├── InvalidRequestError  400: a field is missing, malformed or out of range (the message names it and the
    │                        valid range), or the prompt is over the context
    ├── AuthenticationError  401: no or a wrong ``Authorization: Bearer`` key
    ├── ModelNotFoundError   404: ``model`` is not the served model
    ├── RequestTooLargeError 413: the body is over ``max_body_bytes``
    ├── OverloadedError      429: the engine holds its maximum of sequences and the queue is full
    │                        (``Retry-After`` says when to try again)
    ├── ShuttingDownError    503: the server is draining; in a stream, the request was cut off at the end of
    │                        the grace period
    └── EngineFailedError    500: the engine loop failed
"""

from typing import ClassVar

__all__ = [
    "APIError",
    "AuthenticationError",
    "EngineFailedError",
    "EngineUnavailableError",
    "InvalidRequestError",
    "ModelNotFoundError",
    "OverloadedError",
    "RequestTooLargeError",
    "ServerConfigError",
    "ServerError",
    "ShuttingDownError",
]


class ServerError(Exception):
    """Base class of the server's errors."""


class ServerConfigError(ServerError, ValueError):
    """The server cannot start with this configuration; the message says what to change."""


class EngineUnavailableError(ServerError, RuntimeError):
    """The chosen engine is not available in this installation."""


class APIError(ServerError):
    """A request failed; :meth:`body` is the OpenAI-shaped JSON answer and :attr:`status_code` its status."""

    status_code: ClassVar[int] = 500
    error_type: ClassVar[str] = "server_error"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        retry_after_s: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        self.retry_after_s = retry_after_s

    def body(self) -> dict[str, dict[str, str | int | None]]:
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }

    def headers(self) -> dict[str, str]:
        return {} if self.retry_after_s is None else {"Retry-After": str(self.retry_after_s)}


class InvalidRequestError(APIError):
    status_code = 400
    error_type = "invalid_request_error"


class AuthenticationError(APIError):
    status_code = 401
    error_type = "authentication_error"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": "Bearer"}


class ModelNotFoundError(APIError):
    status_code = 404
    error_type = "invalid_request_error"


class RequestTooLargeError(APIError):
    status_code = 413
    error_type = "invalid_request_error"


class OverloadedError(APIError):
    status_code = 429
    error_type = "rate_limit_error"


class ShuttingDownError(APIError):
    status_code = 503
    error_type = "server_shutting_down"


class EngineFailedError(APIError):
    status_code = 500
    error_type = "server_error"
