"""Starting the server: load the engine, build the app, run uvicorn with a graceful drain.

On SIGTERM or SIGINT, :class:`PipoServer` starts the service's drain (new requests get 503, running ones
go on) and uvicorn stops accepting connections and waits for the open ones. A request still generating
after ``grace_period_s`` is cut off by the service, so its stream ends cleanly with an error event and
``[DONE]``; uvicorn's own hard limit is a few seconds later, as a backstop. A second SIGINT exits at once.
"""

import logging
from types import FrameType
from typing import Any, Final

import uvicorn

from pipo_agent.server.config import EngineKind, ServerConfig
from pipo_agent.server.errors import EngineUnavailableError, ServerConfigError

__all__ = ["PipoServer", "build_server", "check", "load_engine_for", "serve"]

logger = logging.getLogger(__name__)

_BACKSTOP_S: Final = 5.0  # uvicorn's hard shutdown limit is the grace period plus this


def check(config: ServerConfig) -> dict[str, object]:
    """Everything that can be checked without loading the model: the engine kind and the checkpoint.
    Returns the settings (without the key); raises ``ServerConfigError`` or
    ``EngineUnavailableError``."""
    _check_engine(config)
    from pipo_agent.backends.checkpoints import MissingCheckpointError, default_model_dir

    try:
        directory = config.model_dir if config.model_dir is not None else default_model_dir()
    except MissingCheckpointError as exc:
        raise ServerConfigError(str(exc)) from exc
    if not (directory / "config.json").is_file():
        raise ServerConfigError(f"no checkpoint at {directory} (it has no config.json)")
    return {**config.summary(), "model_dir": str(directory)}


def _check_engine(config: ServerConfig) -> None:
    if config.engine is EngineKind.SGLANG:
        from pipo_agent.backends.sglang.plugin import SGLangVersionError, check_sglang_version

        try:
            check_sglang_version()
        except SGLangVersionError as exc:
            raise EngineUnavailableError(str(exc)) from exc


def load_engine_for(config: ServerConfig) -> tuple[Any, Any]:
    """The engine and tokenizer that ``config`` names (seconds of torch work)."""
    _check_engine(config)
    import torch

    from pipo_agent.backends.engine.llm_engine import load_engine

    if config.threads is not None:
        torch.set_num_threads(config.threads)
    options: dict[str, Any] = {"kv_cache_bytes": config.kv_cache_bytes, "max_num_seqs": config.max_num_seqs}
    if config.max_model_pairs is not None:
        options["max_model_pairs"] = config.max_model_pairs
    engine, tokenizer = load_engine(config.model_dir, mode=config.mode.value, device=config.device, **options)
    return engine, tokenizer


class PipoServer(uvicorn.Server):
    """uvicorn's server, draining the service before it stops (see the module docstring)."""

    def __init__(self, config: uvicorn.Config, app: Any) -> None:
        super().__init__(config)
        self.app = app

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.begin_drain()
        super().handle_exit(sig, frame)

    def begin_drain(self) -> None:
        state = getattr(self.app, "state", None)
        service = getattr(state, "service", None)  # set once the lifespan has started the engine
        if service is not None:
            service.begin_drain()

    def request_stop(self) -> None:
        """Stop from another thread (tests, embedding): drain, then exit as on SIGTERM."""
        self.begin_drain()
        self.should_exit = True

    @property
    def port(self) -> int:
        """The bound port (useful with ``port=0``); valid once ``started`` is true."""
        return int(self.servers[0].sockets[0].getsockname()[1])


def build_server(app: Any, config: ServerConfig) -> PipoServer:
    uv_config = uvicorn.Config(
        app,
        host=config.host,
        port=config.port,
        log_level=config.log_level,
        timeout_graceful_shutdown=int(config.grace_period_s + _BACKSTOP_S),
        lifespan="on",
    )
    return PipoServer(uv_config, app)


def serve(config: ServerConfig) -> None:
    """Load the engine and serve until SIGTERM/SIGINT (blocking)."""
    from pipo_agent.server.app import create_app

    check(config)
    engine, tokenizer = load_engine_for(config)
    server = build_server(create_app(config, engine, tokenizer), config)
    logger.info("serving %s on http://%s:%d", config.served_model_name, config.host, config.port)
    server.run()
