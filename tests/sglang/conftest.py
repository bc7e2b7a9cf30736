"""What the SGLang tests share: the SGLang environment they need, and a server process on a loopback port."""

import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

SGLANG_PYTHON = os.environ.get("PIPO_TEST_SGLANG_PYTHON")
NEEDS_SGLANG = pytest.mark.skipif(
    not SGLANG_PYTHON,
    reason="PIPO_TEST_SGLANG_PYTHON is not set: no SGLang environment here "
    "(scripts/install_sglang_cpu.sh makes one; .ci/run sets the variable)",
)


@contextmanager
def server_process(
    command_for_port: Callable[[int], list[str]], log: Path, env: dict[str, str] | None = None
) -> Iterator[str]:
    """Starts `command_for_port(port)` on a free loopback port, waits until `/health` answers 200, yields the
    server's URL and stops the process when the block ends. A server that exits or does not come up in 300 s
    fails the test with the end of its log."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    with log.open("w") as out:
        process = subprocess.Popen(command_for_port(port), stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            if process.poll() is not None:
                pytest.fail(f"the SGLang server exited ({process.returncode}):\n{log.read_text()[-4000:]}")
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the SGLang server did not come up in 300 s:\n{log.read_text()[-4000:]}")
            time.sleep(1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
