"""http_get over real loopback HTTP: only allowed hosts, checked redirects, capped bodies and time."""

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pipo_agent.errors import ToolConfigError
from pipo_agent.messages import ToolCall
from pipo_agent.tools.http_get import http_get_tool
from pipo_agent.toolset import Toolset

pytestmark = pytest.mark.anyio


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        port = self.server.server_port  # type: ignore[attr-defined]
        routes = {
            "/hello": (200, "text/plain; charset=utf-8", "héllo".encode()),
            "/json": (200, "application/json", b'{"ok": true}'),
            "/big": (200, "text/plain", b"y" * 100_000),
            "/png": (200, "image/png", b"\x89PNG"),
            "/missing": (404, "text/plain", b"no such page"),
        }
        redirects = {
            "/to-hello": "/hello",
            "/away": f"http://localhost:{port}/hello",
            "/to-file": "file:///etc/passwd",
            "/loop": "/loop",
        }
        if self.path in redirects:
            self.send_response(302)
            self.send_header("Location", redirects[self.path])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path == "/slow":
            time.sleep(2)
        status, content_type, body = routes.get(self.path, (200, "text/plain", b"slow"))
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


async def fetch(url: str, **settings: object) -> tuple[str, bool]:
    tools = Toolset([http_get_tool(["127.0.0.1"], **settings)])  # type: ignore[arg-type]
    result = await tools.call(ToolCall(id="c", name="http_get", arguments={"url": url}))
    return result.content, result.is_error


async def test_fetches_text_from_an_allowed_host(base_url: str, anyio_backend: str) -> None:
    assert await fetch(f"{base_url}/hello") == (
        "HTTP 200 OK\ncontent-type: text/plain; charset=utf-8\n\nhéllo",
        False,
    )
    assert (await fetch(f"{base_url}/json"))[0].endswith('\n\n{"ok": true}')
    assert await fetch(f"{base_url}/missing") == (
        "HTTP 404 Not Found\ncontent-type: text/plain\n\nno such page",
        False,
    )


async def test_follows_redirects_only_to_allowed_hosts(base_url: str, anyio_backend: str) -> None:
    assert (await fetch(f"{base_url}/to-hello"))[0].endswith("\n\nhéllo")
    assert await fetch(f"{base_url}/away") == (
        "Error: host 'localhost' is not allowed; allowed hosts: 127.0.0.1",
        True,
    )
    content, is_error = await fetch(f"{base_url}/to-file")
    assert is_error and "only absolute http:// or https:// URLs" in content
    content, is_error = await fetch(f"{base_url}/loop", max_redirects=3)
    assert is_error and "was redirected more than 3 times" in content


async def test_refuses_other_hosts_and_schemes_without_connecting(anyio_backend: str) -> None:
    cases = {
        "http://example.com/": "host 'example.com' is not allowed",
        "https://127.0.0.1.evil.test/": "host '127.0.0.1.evil.test' is not allowed",
        "http://127.0.0.1@evil.test/": "host 'evil.test' is not allowed",
        "ftp://127.0.0.1/": "scheme: 'ftp'",
        "file:///etc/passwd": "scheme: 'file'",
        "/relative": "scheme: none",
    }
    for url, message in cases.items():
        content, is_error = await fetch(url)
        assert is_error and message in content, (url, content)


async def test_caps_the_body_and_hides_binary_content(base_url: str, anyio_backend: str) -> None:
    content, _ = await fetch(f"{base_url}/big", max_bytes=1000)
    assert content.endswith("\n\n" + "y" * 1000 + "\n[... truncated after 1000 bytes]")
    content, _ = await fetch(f"{base_url}/png")
    assert content.endswith("[binary content (image/png) is not shown]")


async def test_slow_servers_time_out(base_url: str, anyio_backend: str) -> None:
    content, is_error = await fetch(f"{base_url}/slow", timeout_s=0.5)
    assert is_error
    assert "0.5" in content


async def test_connection_failures_are_tool_errors(anyio_backend: str) -> None:
    content, is_error = await fetch("http://127.0.0.1:9/")  # the discard port: nothing listens there
    assert is_error
    assert content.startswith("Error: GET http://127.0.0.1:9/ failed: ConnectError")


def test_it_is_off_until_hosts_are_given() -> None:
    with pytest.raises(ToolConfigError, match="non-empty list of allowed hosts"):
        http_get_tool([])
    with pytest.raises(ToolConfigError, match="not one string"):
        http_get_tool("127.0.0.1")
    assert (
        "Allowed hosts: 127.0.0.1, api.example.org."
        in http_get_tool(["API.example.org.", "127.0.0.1"]).description
    )
