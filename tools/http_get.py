"""``http_get``: fetch a URL with HTTP GET, but only from hosts on an explicit allow-list.

Off by default: there is no tool until :func:`http_get_tool` is given the hosts it may reach. A URL is
refused unless its scheme is ``http`` or ``https`` and its host is on the list (exact match of the host
name or IP literal, case-insensitive; any port). Redirects are followed by hand, at most ``max_redirects``,
and each target is checked the same way, so a redirect cannot lead to another host. Proxy settings from
the environment are ignored. The whole fetch is bounded by ``timeout_s`` and the body by ``max_bytes``
(after content decoding; the rest is not read). Only textual bodies are returned.

An allow-list of names does not pin addresses: if an allowed name resolves to an internal address, that is
where the request goes.
"""

from collections.abc import Collection
from typing import Final

import httpx

from pipo_agent.errors import FetchError, HostNotAllowedError, ToolConfigError
from pipo_agent.toolset import Tool

__all__ = ["http_get_tool"]

_SCHEMES: Final = frozenset({"http", "https"})
_TEXT_TYPES: Final = ("text/", "application/json", "application/xml", "application/javascript")


def http_get_tool(
    allowed_hosts: Collection[str],
    *,
    timeout_s: float = 10.0,
    max_bytes: int = 200_000,
    max_redirects: int = 5,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Tool:
    """An ``http_get(url)`` tool that reaches only ``allowed_hosts`` (see the module docstring)."""
    if isinstance(allowed_hosts, str):
        raise ToolConfigError("allowed_hosts must be a collection of host names, not one string")
    hosts = frozenset(host.strip().lower().rstrip(".") for host in allowed_hosts)
    if not hosts or "" in hosts:
        raise ToolConfigError("http_get needs a non-empty list of allowed hosts (it is off by default)")
    if timeout_s <= 0 or max_bytes < 1 or max_redirects < 0:
        raise ToolConfigError("http_get needs timeout_s > 0, max_bytes >= 1 and max_redirects >= 0")
    fetcher = _Fetcher(hosts, timeout_s, max_bytes, max_redirects, transport)

    async def http_get(url: str) -> str:
        """Fetch a URL with HTTP GET and return the status line, content type and text of the response.

        Args:
            url: An absolute http:// or https:// URL on one of the allowed hosts.
        """
        return await fetcher.fetch(url)

    description = (
        f"Fetch a web page or API response with HTTP GET. Allowed hosts: {', '.join(sorted(hosts))}."
    )
    return Tool.from_function(http_get, description=description, timeout=timeout_s)


class _Fetcher:
    def __init__(
        self,
        hosts: frozenset[str],
        timeout_s: float,
        max_bytes: int,
        max_redirects: int,
        transport: httpx.AsyncBaseTransport | None,
    ) -> None:
        self.hosts = hosts
        self.timeout_s = timeout_s
        self.max_bytes = max_bytes
        self.max_redirects = max_redirects
        self.transport = transport

    def check(self, url: str | httpx.URL) -> httpx.URL:
        """The URL, if its scheme and host are allowed; else ``FetchError`` / ``HostNotAllowedError``."""
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL as exc:
            raise FetchError(f"{str(url)!r} is not a valid URL: {exc}") from exc
        if parsed.scheme not in _SCHEMES:
            scheme = repr(parsed.scheme) if parsed.scheme else "none"
            raise FetchError(f"only absolute http:// or https:// URLs can be fetched (scheme: {scheme})")
        host = parsed.host.lower().rstrip(".")
        if host not in self.hosts:
            allowed = ", ".join(sorted(self.hosts))
            raise HostNotAllowedError(f"host {host!r} is not allowed; allowed hosts: {allowed}")
        return parsed

    async def fetch(self, url: str) -> str:
        current = self.check(url)
        try:
            async with httpx.AsyncClient(
                follow_redirects=False, timeout=self.timeout_s, trust_env=False, transport=self.transport
            ) as client:
                for _ in range(self.max_redirects + 1):
                    async with client.stream("GET", current) as response:
                        location = response.headers.get("location")
                        if not (response.is_redirect and location):
                            return await self._read(response)
                    current = self.check(current.join(location))
        except httpx.HTTPError as exc:
            raise FetchError(f"GET {current} failed: {type(exc).__name__}: {exc}") from exc
        raise FetchError(f"GET {url} was redirected more than {self.max_redirects} times")

    async def _read(self, response: httpx.Response) -> str:
        head = f"HTTP {response.status_code} {response.reason_phrase}"
        content_type = response.headers.get("content-type", "")
        head += f"\ncontent-type: {content_type or '(none)'}"
        if content_type and not content_type.lower().startswith(_TEXT_TYPES):
            return f"{head}\n\n[binary content ({content_type}) is not shown]"
        body = bytearray()
        truncated = False
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > self.max_bytes:
                truncated = True
                break
        text = _decode(bytes(body[: self.max_bytes]), response.encoding)
        note = f"\n[... truncated after {self.max_bytes} bytes]" if truncated else ""
        return f"{head}\n\n{text}{note}"


def _decode(data: bytes, encoding: str | None) -> str:
    try:
        return data.decode(encoding or "utf-8", errors="replace")
    except LookupError:  # a charset Python does not know
        return data.decode("utf-8", errors="replace")
