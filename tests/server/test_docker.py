"""The container files, tested without Docker: the compose file parses with the expected services, the
Dockerfiles say what they must, and ``docker/entrypoint.sh`` works on this machine (config check, serving on
loopback with a graceful drain on SIGTERM, and the agent against the server with SQL memory)."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.server.conftest import API_KEY, LONG_TASK, MODEL, LiveServer

DOCKER = Path(__file__).resolve().parents[2] / "docker"
ENTRYPOINT = DOCKER / "entrypoint.sh"


def env(**values: str) -> dict[str, str]:
    """This environment without PIPO_ variables, the venv's scripts first on PATH, plus ``values``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("PIPO_")}
    base["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{base.get('PATH', '')}"
    base["PIPO_API_KEY_FILE"] = "/nonexistent/pipo_api_key"  # not the container's secret path
    return {**base, "OMP_NUM_THREADS": "1", **values}


def entrypoint(*args: str, timeout: float = 60, **values: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ENTRYPOINT), *args],
        env=env(**values),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def test_compose_file() -> None:
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"server", "postgres", "agent", "server-gpu"}
    server = services["server"]
    assert server["build"]["dockerfile"] == "docker/Dockerfile.cpu" and server["ports"] == [
        "127.0.0.1:8000:8000"
    ]
    assert server["environment"]["PIPO_HOST"] == "0.0.0.0" and server["secrets"] == ["pipo_api_key"]
    assert server["environment"]["PIPO_API_KEY_FILE"] == "/run/secrets/pipo_api_key"
    postgres = services["postgres"]
    assert postgres["image"].startswith("postgres:") and "POSTGRES_PASSWORD_FILE" in postgres["environment"]
    agent = services["agent"]
    assert agent["environment"]["PIPO_MEMORY_URL"].startswith("postgresql+asyncpg://")
    assert agent["environment"]["PIPO_SERVER_URL"] == "http://server:8000/v1"
    assert agent["depends_on"] == {
        "server": {"condition": "service_healthy"},
        "postgres": {"condition": "service_healthy"},
    }
    assert agent["entrypoint"][-1] == "agent"
    assert services["server-gpu"]["build"]["dockerfile"] == "docker/Dockerfile.gpu"
    assert set(compose["secrets"]) == {"pipo_api_key", "postgres_password"}
    for service in services.values():
        assert "PIPO_API_KEY" not in service.get("environment", {})  # keys come from secret files


def test_dockerfiles() -> None:
    cpu = (DOCKER / "Dockerfile.cpu").read_text()
    assert "FROM python:3.11-slim" in cpu and "torch==2.13.0" in cpu and "whl/cpu" in cpu
    assert (
        '".[server,postgres]"' in cpu
        and "USER pipo" in cpu
        and 'ENTRYPOINT ["/app/docker/entrypoint.sh"]' in cpu
    )
    gpu = (DOCKER / "Dockerfile.gpu").read_text()
    assert (
        "sglang" in gpu and "PIPO_ENGINE=sglang" in gpu and 'ENTRYPOINT ["/app/docker/entrypoint.sh"]' in gpu
    )
    assert os.access(ENTRYPOINT, os.X_OK)
    subprocess.run(["sh", "-n", str(ENTRYPOINT)], check=True)
    if shutil.which("hadolint"):
        for name in ("Dockerfile.cpu", "Dockerfile.gpu"):
            subprocess.run(["hadolint", str(DOCKER / name)], check=True)


def test_entrypoint_check_mode(tmp_path: Path) -> None:
    refused = entrypoint("check")  # PIPO_HOST defaults to 0.0.0.0 in the container
    assert refused.returncode == 2 and "API key is required" in refused.stdout + refused.stderr
    by_env = entrypoint("check", PIPO_API_KEY="s3cret-env", PIPO_MAX_QUEUE="3")
    assert by_env.returncode == 0, by_env.stderr
    summary = json.loads(by_env.stdout)
    assert summary["host"] == "0.0.0.0" and summary["api_key"] == "set" and summary["max_queue"] == 3
    assert "s3cret-env" not in by_env.stdout
    key_file = tmp_path / "key"
    key_file.write_text("s3cret-file\n")
    by_file = entrypoint("check", PIPO_API_KEY_FILE=str(key_file), PIPO_HOST="127.0.0.1", PIPO_PORT="9")
    assert by_file.returncode == 0 and json.loads(by_file.stdout)["port"] == 9
    sglang = entrypoint("check", PIPO_ENGINE="sglang", PIPO_API_KEY="k")
    assert sglang.returncode == 2 and "sglang==0.5.23" in sglang.stdout + sglang.stderr  # not installed here
    sglang_python = os.environ.get("PIPO_TEST_SGLANG_PYTHON")
    if sglang_python:  # the GPU image's command, from the SGLang environment (.ci/run makes one)
        values = env(PIPO_ENGINE="sglang", PIPO_DEVICE="cuda", PIPO_API_KEY="k3y-gpu")
        values["PATH"] = f"{Path(sglang_python).parent}{os.pathsep}{values['PATH']}"
        gpu = subprocess.run(
            [str(ENTRYPOINT), "check"],
            env=values,
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
        assert gpu.returncode == 0, gpu.stderr
        argv = json.loads(gpu.stdout)["sglang"]["argv"]
        assert argv[argv.index("--device") + 1] == "cuda" and argv[argv.index("--api-key") + 1] == "***"
        assert argv[argv.index("--speculative-algorithm") + 1] == "PIPO" and "k3y-gpu" not in gpu.stdout


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _stream(url: str, task: str, max_tokens: int, out: dict[str, Any], started: threading.Event) -> None:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": task}],
        "max_tokens": max_tokens,
        "tau": 1.0,
        "stream": True,
    }
    headers = {"Authorization": f"Bearer {API_KEY}"}
    lines = []
    with httpx.stream(
        "POST", f"{url}/v1/chat/completions", json=body, headers=headers, timeout=60
    ) as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                lines.append(line.removeprefix("data: "))
                started.set()
    out["lines"] = lines
    out["ended_at"] = time.monotonic()


def test_entrypoint_serves_and_drains_on_sigterm() -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    values = dict(PIPO_HOST="127.0.0.1", PIPO_PORT=str(port), PIPO_API_KEY=API_KEY, PIPO_GRACE_PERIOD="4")
    process = subprocess.Popen(
        [str(ENTRYPOINT)],
        env=env(**values, PIPO_THREADS="1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not come up"
            time.sleep(0.2)
        assert httpx.get(f"{url}/v1/models").status_code == 401  # the key from the environment is required
        short: dict[str, Any] = {}
        long: dict[str, Any] = {}
        events = [threading.Event(), threading.Event()]
        threads = [
            threading.Thread(target=_stream, args=(url, LONG_TASK, 100, short, events[0])),
            threading.Thread(target=_stream, args=(url, LONG_TASK, 3000, long, events[1])),
        ]
        for thread in threads:
            thread.start()
        assert all(event.wait(60) for event in events)
        sigterm_at = time.monotonic()
        process.send_signal(signal.SIGTERM)
        for thread in threads:
            thread.join(60)
        # uvicorn re-raises the signal it caught once it has shut down, so the exit is by SIGTERM (143).
        assert process.wait(timeout=30) == -signal.SIGTERM
        drained_in = time.monotonic() - sigterm_at
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    # The short request was still running at SIGTERM and finished normally (100 tokens, well within the
    # 4 s grace period); the long one was cut off cleanly at the end of the grace period.
    assert short["lines"][-1] == "[DONE]" and short["ended_at"] > sigterm_at
    assert json.loads(short["lines"][-2])["choices"][0]["finish_reason"] == "length"
    assert long["lines"][-1] == "[DONE]"
    error = json.loads(long["lines"][-2])["error"]
    assert error["type"] == "server_shutting_down" and "cut off" in error["message"]
    assert 4.0 <= drained_in < 20.0


def test_entrypoint_agent_mode(live: LiveServer, tmp_path: Path) -> None:
    database = tmp_path / "memory.db"
    done = entrypoint(
        "agent",
        "What is 12*7? Use the calculator.",
        "--max-steps",
        "2",
        "--max-tokens",
        "48",
        timeout=120,
        PIPO_SERVER_URL=f"{live.url}/v1",
        PIPO_MEMORY_URL=f"sqlite+aiosqlite:///{database}",
        PIPO_API_KEY=API_KEY,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["run_id"] and result["steps"] >= 1 and result["usage"]["steps"] > 0
    assert database.exists()
    refused = entrypoint(
        "agent",
        "hi",
        timeout=120,
        PIPO_SERVER_URL=f"{live.url}/v1",
        PIPO_MEMORY_URL=f"sqlite+aiosqlite:///{database}",
    )
    assert refused.returncode == 1 and "401" in refused.stderr


@pytest.fixture(autouse=True)
def _no_docker_secrets_dir() -> None:
    assert not (DOCKER / "secrets" / "pipo_api_key").exists(), "a real key must not sit in the repository"
