"""Any OpenAI-compatible chat server as a :class:`~pipo_agent.backend.ChatBackend`: :class:`HttpChatBackend`.

async with HttpChatBackend.connect("http://127.0.0.1:8000/v1", "pipo-default", api_key=key) as backend:
    result = await backend.complete(ChatRequest(messages=[UserMessage(content="hi")]))
"""

from pipo_agent.backends.http.client import HttpChatBackend
from pipo_agent.backends.http.config import HttpBackendConfig
from pipo_agent.backends.http.errors import (
    HttpBackendError,
    HttpConnectionError,
    HttpStatusError,
    StreamFormatError,
)

__all__ = [
    "HttpBackendConfig",
    "HttpBackendError",
    "HttpChatBackend",
    "HttpConnectionError",
    "HttpStatusError",
    "StreamFormatError",
]
