"""Server-sent events: the ``data`` payloads of a text stream, one per event (RFC: WHATWG HTML, 9.2)."""

from collections.abc import AsyncIterable, AsyncIterator

__all__ = ["sse_data"]


async def sse_data(lines: AsyncIterable[str]) -> AsyncIterator[str]:
    """The data of each event: ``data:`` lines joined by newlines, dispatched at a blank line (or the end).
    Comments (``:``) and other fields (``event``, ``id``, ``retry``) are skipped."""
    data: list[str] = []
    async for raw in lines:
        line = raw.rstrip("\r\n")
        if not line:
            if data:
                yield "\n".join(data)
                data = []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        if name == "data":
            data.append(value.removeprefix(" "))
    if data:
        yield "\n".join(data)
