"""One live server for the server tests: the real default model behind uvicorn on 127.0.0.1 (a free port),
in a background thread, with an API key and a small admission bound (4 running + 4 queued) so back-pressure
is reachable with a handful of clients."""

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from pipo_agent.server import PipoServer, ServerConfig, build_server, create_app, load_engine_for

API_KEY = "test-key-0123"
MODEL = "pipo-default"
# A task on which the default model loops without an end of turn (greedy, tau=1: over 1500 tokens), for tests
# that need a request to still be generating when they act (disconnects, shutdown).
NUMBERS = (
    "498, 415, 941, 803, 850, 311, 992, 489, 367, 598, 914, 930, 224, 517, 143, 289, 144, 774, 98, 634, 819, 257, "
    "932, 546, 723, 830, 617, 924, 151, 318, 102, 748, 76, 921, 871, 701, 339, 484, 574, 104, 363, 445, 324, 626"
)
LONG_TASK = f"Take every 2nd item of this list, starting with item 2: {NUMBERS}. Answer with the items separated by single spaces."


@dataclass(frozen=True)
class LiveServer:
    url: str
    server: PipoServer
    config: ServerConfig

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {API_KEY}"}


@contextmanager
def serving(app: Any, config: ServerConfig) -> Iterator[PipoServer]:
    """``app`` under uvicorn on 127.0.0.1 in a background thread, until the block ends."""
    server = build_server(app, config)
    thread = threading.Thread(target=server.run, name="pipo-test-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield server
    finally:
        server.request_stop()
        thread.join(timeout=30)


@contextmanager
def running(config: ServerConfig, engine: object, tokenizer: object) -> Iterator[LiveServer]:
    with serving(create_app(config, engine, tokenizer), config) as server:  # type: ignore[arg-type]
        yield LiveServer(f"http://127.0.0.1:{server.port}", server, config)


def server_config(**overrides: object) -> ServerConfig:
    values: dict[str, object] = dict(
        port=0,
        api_key=API_KEY,
        max_num_seqs=4,
        max_queue=4,
        kv_cache_bytes=16 << 20,
        max_model_pairs=1024,
        default_max_tokens=32,
        grace_period_s=5.0,
        task_taus={"strings": 0.5},
        log_level="warning",
    )
    return ServerConfig.build(**{**values, **overrides})


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    backend: str = request.param
    return backend


def wait_until_idle(live: LiveServer, timeout: float = 30.0) -> dict[str, Any]:
    """Poll /health until no request is admitted or in the engine and every KV block is free again."""
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        engine = httpx.get(f"{live.url}/health", timeout=10).json()["engine"]
        idle = engine["admitted"] == 0 and engine["unfinished"] == 0 and engine["running"] == 0
        if idle and engine["free_blocks"] == engine["total_blocks"]:
            return engine
        if time.monotonic() > deadline:
            raise AssertionError(f"the server did not become idle: {engine}")
        time.sleep(0.05)


@pytest.fixture(scope="session")
def live() -> Iterator[LiveServer]:
    config = server_config()
    engine, tokenizer = load_engine_for(config)
    with running(config, engine, tokenizer) as server:
        yield server
