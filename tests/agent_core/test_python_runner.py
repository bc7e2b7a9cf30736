"""run_python: real subprocesses with wall-time, memory and output limits, and no network by default."""

import socket
import threading

import pytest

from pipo_agent.errors import ToolConfigError
from pipo_agent.messages import ToolCall
from pipo_agent.tools.python_runner import python_runner_tool
from pipo_agent.toolset import Toolset

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the tool is sync (it runs in a worker thread); the toolset's trio path is tested elsewhere


async def run(code: str, **settings: object) -> tuple[str, bool]:
    tools = Toolset([python_runner_tool(**settings)])  # type: ignore[arg-type]
    result = await tools.call(ToolCall(id="c", name="run_python", arguments={"code": code}))
    return result.content, result.is_error


async def test_stdout_stderr_and_exit_code_come_back() -> None:
    content, is_error = await run(
        "import sys\nprint('hello', 6 * 7)\nprint('warn', file=sys.stderr)\nsys.exit(3)"
    )
    assert not is_error
    assert content == "exit code: 3\nstdout:\nhello 42\n\nstderr:\nwarn\n"


async def test_exceptions_show_a_traceback_of_the_snippet_only() -> None:
    content, _ = await run("x = 1\n1 / 0\n")
    assert content.startswith("exit code: 1\nstdout: (empty)\nstderr:\nTraceback (most recent call last):\n")
    assert 'File "snippet.py", line 2, in <module>' in content
    assert "ZeroDivisionError: division by zero" in content
    assert "<string>" not in content  # the bootstrap's frame is hidden


async def test_the_interpreter_is_isolated_in_a_fresh_directory() -> None:
    content, _ = await run(
        "import os, sys\nprint(sys.flags.isolated, os.listdir('.'), 'PIPO' in ''.join(os.environ))"
    )
    assert "stdout:\n1 ['snippet.py'] True" in content


async def test_wall_time_limit_kills_the_program_and_its_children() -> None:
    code = "import subprocess, time\nsubprocess.Popen(['sleep', '30'])\nprint('started', flush=True)\ntime.sleep(30)"
    content, is_error = await run(code, timeout_s=1.0)
    assert is_error
    assert content.startswith("Error: the program ran longer than 1 s and was stopped. Output so far:\n")
    assert "started" in content


async def test_memory_limit_raises_memory_error() -> None:
    content, _ = await run("b = bytearray(400 * 2**20)\nprint('allocated')", memory_mb=256)
    assert "MemoryError" in content
    assert "allocated" not in content
    assert (await run("b = bytearray(50 * 2**20)\nprint('allocated')", memory_mb=256))[0].count(
        "allocated"
    ) == 1


async def test_output_is_truncated() -> None:
    content, _ = await run("print('ab' * 5000)", max_output_chars=100)
    assert (
        "stdout:\n" + "ab" * 50 + "\n[... output truncated: 10001 bytes in all, first 100 characters shown]"
        in content
    )


@pytest.fixture
def loopback_server() -> tuple[str, int]:
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(10)

    def accept_once() -> None:
        try:
            connection, _ = server.accept()
            connection.close()
        except OSError:
            pass

    threading.Thread(target=accept_once, daemon=True).start()
    host, port = server.getsockname()[:2]
    return host, port


async def test_network_is_blocked_by_default_and_allowed_on_request(loopback_server: tuple[str, int]) -> None:
    host, port = loopback_server
    code = (
        f"import socket\nsocket.create_connection(({host!r}, {port}), timeout=5).close()\nprint('connected')"
    )
    blocked, _ = await run(code)
    assert "OSError: network access is disabled for this code" in blocked
    raw, _ = await run(f"import socket\ns = socket.socket()\ns.connect(({host!r}, {port}))")
    assert "network access is disabled" in raw
    allowed, _ = await run(code, allow_network=True)
    assert "stdout:\nconnected" in allowed


def test_settings_are_checked() -> None:
    with pytest.raises(ToolConfigError, match="memory_mb >= 64"):
        python_runner_tool(memory_mb=8)
