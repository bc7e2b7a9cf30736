"""The OpenAI-compatible HTTP server over the embedded engine (``pipo-agent serve``); needs the ``server`` extra.

:func:`create_app` builds the FastAPI app over a loaded engine, :func:`serve` loads and runs it with uvicorn,
:class:`ServerConfig` is its one configuration. Nothing in the framework imports this package. Names are
imported on first use, so checking a configuration (``serve --check``) does not import torch.
"""

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS: dict[str, str] = {
    "create_app": "pipo_agent.server.app",
    "EngineKind": "pipo_agent.server.config",
    "EngineMode": "pipo_agent.server.config",
    "ServerConfig": "pipo_agent.server.config",
    "is_loopback": "pipo_agent.server.config",
    "EngineUnavailableError": "pipo_agent.server.errors",
    "ServerConfigError": "pipo_agent.server.errors",
    "ServerError": "pipo_agent.server.errors",
    "PipoServer": "pipo_agent.server.run",
    "build_server": "pipo_agent.server.run",
    "check": "pipo_agent.server.run",
    "load_engine_for": "pipo_agent.server.run",
    "serve": "pipo_agent.server.run",
}

__all__ = [
    "EngineKind",
    "EngineMode",
    "EngineUnavailableError",
    "PipoServer",
    "ServerConfig",
    "ServerConfigError",
    "ServerError",
    "build_server",
    "check",
    "create_app",
    "is_loopback",
    "load_engine_for",
    "serve",
]

if TYPE_CHECKING:
    from pipo_agent.server.app import create_app
    from pipo_agent.server.config import EngineKind, EngineMode, ServerConfig, is_loopback
    from pipo_agent.server.errors import EngineUnavailableError, ServerConfigError, ServerError
    from pipo_agent.server.run import PipoServer, build_server, check, load_engine_for, serve


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
