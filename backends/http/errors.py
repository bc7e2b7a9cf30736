"""Errors of the HTTP backend; all are :class:`~pipo_agent.errors.BackendError`, so the agent treats them as
any backend failure. httpx's exceptions are mapped here, once.

BackendError
└── HttpBackendError          base of this package's errors
    ├── HttpStatusError       the server answered an error status (after retries, for 429 and 5xx);
    │                         ``status_code`` and the server's own message
    ├── HttpConnectionError   no connection after retries, a timeout, or the connection broke mid-stream
    └── StreamFormatError     the response is not an OpenAI chat stream (bad JSON, an error event,
                              no finish reason)
"""

from pipo_agent.errors import BackendError

__all__ = ["HttpBackendError", "HttpConnectionError", "HttpStatusError", "StreamFormatError"]


class HttpBackendError(BackendError):
    """Base class of the HTTP backend's errors."""


class HttpStatusError(HttpBackendError):
    """The server answered with an error status; the message carries the server's explanation."""

    def __init__(self, message: str, *, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code


class HttpConnectionError(HttpBackendError):
    """The server could not be reached, timed out, or dropped the connection."""


class StreamFormatError(HttpBackendError):
    """The server's stream is not a well-formed OpenAI chat completion stream, or it reported an error."""
