"""File tools confined to one root directory: ``read_file``, ``list_dir`` and (optionally) ``write_file``.

Paths are relative to the root. A path is refused when it is absolute, has a ``..`` part, or resolves
(``Path.resolve``, following every symlink) to a place outside the root, so a symlink inside the root that
points out of it cannot be followed. Files are opened at the resolved path with ``O_NOFOLLOW``, so a file
replaced by a symlink between the check and the open is refused (a directory swapped for a symlink in that
window is not caught: do not share the root with processes that race the agent). Sizes are capped: reads return at most
``max_read_bytes`` (with a note when cut), writes above ``max_write_bytes`` are refused, listings show at
most ``max_entries`` entries. Only UTF-8 text is read or written.
"""

import os
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Final

from pipo_agent.errors import PathAccessError, ToolConfigError
from pipo_agent.toolset import Tool

__all__ = ["FileRoot", "files_tools"]

_NUL: Final = b"\x00"


class FileRoot:
    """A directory the file tools may use, with path checks and size limits."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        max_read_bytes: int = 100_000,
        max_write_bytes: int = 100_000,
        max_entries: int = 200,
    ) -> None:
        try:
            self.root = Path(root).resolve(strict=True)
        except (OSError, RuntimeError) as exc:
            raise ToolConfigError(f"file tool root {str(root)!r} does not exist") from exc
        if not self.root.is_dir():
            raise ToolConfigError(f"file tool root {str(root)!r} is not a directory")
        self.max_read_bytes = max_read_bytes
        self.max_write_bytes = max_write_bytes
        self.max_entries = max_entries

    def resolve(self, path: str) -> Path:
        """The real path of ``path`` (relative to the root); raises ``PathAccessError`` outside the root."""
        relative = PurePosixPath(path.replace("\\", "/"))
        if relative.is_absolute():
            raise PathAccessError(f"{path!r} is absolute; give a path relative to the root, like 'notes.txt'")
        if ".." in relative.parts:
            raise PathAccessError(f"{path!r} contains '..'; paths must stay inside the root")
        try:
            resolved = (self.root / relative).resolve()
        except (OSError, RuntimeError) as exc:  # a symlink loop
            raise PathAccessError(f"cannot resolve {path!r}: {exc}") from exc
        if not resolved.is_relative_to(self.root):
            raise PathAccessError(f"{path!r} leads outside the root (through a symlink)")
        return resolved

    def read_file(self, path: str) -> str:
        target = self.resolve(path)
        if not target.is_file():
            raise PathAccessError(f"{path!r} is not a file" if target.exists() else f"no file {path!r}")
        with os.fdopen(os.open(target, os.O_RDONLY | os.O_NOFOLLOW), "rb") as file:
            data = file.read(self.max_read_bytes + 1)
        if _NUL in data:
            raise PathAccessError(f"{path!r} is a binary file; only text files can be read")
        text = data[: self.max_read_bytes].decode("utf-8", errors="replace")
        if len(data) > self.max_read_bytes:
            size = target.stat().st_size
            text += f"\n[... truncated: the file has {size} bytes, the first {self.max_read_bytes} are shown]"
        return text

    def list_dir(self, path: str = ".") -> str:
        target = self.resolve(path)
        if not target.is_dir():
            raise PathAccessError(
                f"{path!r} is not a directory" if target.exists() else f"no directory {path!r}"
            )
        entries = sorted(target.iterdir(), key=lambda p: p.name)
        lines = [_describe(entry) for entry in entries[: self.max_entries]]
        if len(entries) > self.max_entries:
            lines.append(f"[... and {len(entries) - self.max_entries} more entries]")
        return "\n".join(lines) if lines else "(empty directory)"

    def write_file(self, path: str, content: str) -> str:
        data = content.encode("utf-8")
        if len(data) > self.max_write_bytes:
            raise PathAccessError(f"the content has {len(data)} bytes; the limit is {self.max_write_bytes}")
        target = self.resolve(path)
        if target == self.root or target.is_dir():
            raise PathAccessError(f"{path!r} is a directory")
        target.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
        return f"wrote {len(data)} bytes to {target.relative_to(self.root).as_posix()}"


def _describe(entry: Path) -> str:
    if entry.is_symlink():
        return f"{entry.name}@ (symlink)"
    if entry.is_dir():
        return f"{entry.name}/"
    return f"{entry.name} ({entry.stat().st_size} bytes)"


def files_tools(
    root: str | os.PathLike[str],
    *,
    writable: bool = False,
    max_read_bytes: int = 100_000,
    max_write_bytes: int = 100_000,
    max_entries: int = 200,
    timeout_s: float = 10.0,
) -> list[Tool]:
    """``read_file`` and ``list_dir`` under ``root``, plus ``write_file`` when ``writable``."""
    files = FileRoot(
        root, max_read_bytes=max_read_bytes, max_write_bytes=max_write_bytes, max_entries=max_entries
    )

    def read_file(path: str) -> str:
        """Read a UTF-8 text file.

        Args:
            path: Path relative to the working directory, e.g. "notes/todo.txt".
        """
        return files.read_file(path)

    def list_dir(path: str = ".") -> str:
        """List a directory: subdirectories end in "/", files show their size.

        Args:
            path: Directory relative to the working directory; "." is the working directory itself.
        """
        return files.list_dir(path)

    def write_file(path: str, content: str) -> str:
        """Write a UTF-8 text file, replacing it if it exists; missing directories are created.

        Args:
            path: Path relative to the working directory, e.g. "out/result.txt".
            content: The complete new text of the file.
        """
        return files.write_file(path, content)

    functions: list[Callable[..., str]] = [read_file, list_dir, *([write_file] if writable else [])]
    return [Tool.from_function(fn, timeout=timeout_s) for fn in functions]
