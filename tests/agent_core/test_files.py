"""File tools on real temporary directories with real symlinks: confined to the root, with size limits."""

import os
from pathlib import Path

import pytest

from pipo_agent.errors import PathAccessError, ToolConfigError
from pipo_agent.messages import ToolCall
from pipo_agent.tools.files import FileRoot, files_tools
from pipo_agent.toolset import Toolset


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, Path]:
    """``root/`` with a file, a subdirectory and symlinks inside and out; ``outside/`` beside it."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    (root / "notes.txt").write_text("hello\nworld\n")
    (root / "sub" / "deep.txt").write_text("deep")
    (outside / "secret.txt").write_text("secret")
    (root / "inner_link").symlink_to(root / "notes.txt")
    (root / "escape_file").symlink_to(outside / "secret.txt")
    (root / "escape_dir").symlink_to(outside)
    (root / "relative_escape").symlink_to(Path("..") / "outside" / "secret.txt")
    return root, outside


def test_reads_and_lists_inside_the_root(layout: tuple[Path, Path]) -> None:
    root, _ = layout
    files = FileRoot(root)
    assert files.read_file("notes.txt") == "hello\nworld\n"
    assert files.read_file("./sub/deep.txt") == "deep"
    assert files.read_file("inner_link") == "hello\nworld\n"  # a symlink that stays inside is fine
    assert files.list_dir(".").splitlines() == [
        "escape_dir@ (symlink)",
        "escape_file@ (symlink)",
        "inner_link@ (symlink)",
        "notes.txt (12 bytes)",
        "relative_escape@ (symlink)",
        "sub/",
    ]
    assert files.list_dir("sub") == "deep.txt (4 bytes)"


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("../outside/secret.txt", "contains '..'"),
        ("sub/../../outside/secret.txt", "contains '..'"),
        ("/etc/passwd", "is absolute"),
        ("escape_file", "leads outside the root"),
        ("relative_escape", "leads outside the root"),
        ("escape_dir/secret.txt", "leads outside the root"),
        ("missing.txt", "no file 'missing.txt'"),
        ("sub", "'sub' is not a file"),
    ],
)
def test_reads_outside_the_root_or_of_non_files_are_refused(
    layout: tuple[Path, Path], path: str, message: str
) -> None:
    with pytest.raises(PathAccessError, match=message):
        FileRoot(layout[0]).read_file(path)


def test_listing_through_an_escaping_symlink_is_refused(layout: tuple[Path, Path]) -> None:
    with pytest.raises(PathAccessError, match="leads outside the root"):
        FileRoot(layout[0]).list_dir("escape_dir")


def test_writes_stay_inside_and_do_not_follow_symlinks_out(layout: tuple[Path, Path]) -> None:
    root, outside = layout
    files = FileRoot(root)
    assert files.write_file("new/dir/out.txt", "données") == "wrote 8 bytes to new/dir/out.txt"
    assert (root / "new" / "dir" / "out.txt").read_text() == "données"
    for path in ("escape_file", "escape_dir/new.txt", "../outside/x.txt"):
        with pytest.raises(PathAccessError):
            files.write_file(path, "pwned")
    assert (outside / "secret.txt").read_text() == "secret"
    assert sorted(os.listdir(outside)) == ["secret.txt"]
    with pytest.raises(PathAccessError, match="is a directory"):
        files.write_file(".", "x")


def test_size_limits(layout: tuple[Path, Path]) -> None:
    root, _ = layout
    (root / "big.txt").write_text("x" * 1000)
    (root / "blob.bin").write_bytes(b"\x00\x01\x02")
    for index in range(5):
        (root / "sub" / f"f{index}.txt").write_text("")
    files = FileRoot(root, max_read_bytes=100, max_write_bytes=10, max_entries=3)
    assert (
        files.read_file("big.txt")
        == "x" * 100 + "\n[... truncated: the file has 1000 bytes, the first 100 are shown]"
    )
    with pytest.raises(PathAccessError, match="binary file"):
        files.read_file("blob.bin")
    with pytest.raises(PathAccessError, match="the content has 11 bytes; the limit is 10"):
        files.write_file("small.txt", "x" * 11)
    assert files.list_dir("sub").splitlines()[-1] == "[... and 3 more entries]"


def test_the_root_must_be_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ToolConfigError, match="does not exist"):
        FileRoot(tmp_path / "nope")
    (tmp_path / "file").write_text("")
    with pytest.raises(ToolConfigError, match="not a directory"):
        FileRoot(tmp_path / "file")


@pytest.mark.anyio
async def test_as_agent_tools(layout: tuple[Path, Path], anyio_backend: str) -> None:
    root, _ = layout
    assert [t.name for t in files_tools(root)] == ["read_file", "list_dir"]
    tools = Toolset(files_tools(root, writable=True))
    assert tools.names == ["read_file", "list_dir", "write_file"]
    wrote = await tools.call(
        ToolCall(id="c1", name="write_file", arguments={"path": "a.txt", "content": "A"})
    )
    assert wrote.content == "wrote 1 bytes to a.txt"
    read = await tools.call(ToolCall(id="c2", name="read_file", arguments={"path": "a.txt"}))
    assert (read.content, read.is_error) == ("A", False)
    refused = await tools.call(ToolCall(id="c3", name="read_file", arguments={"path": "escape_file"}))
    assert refused.is_error
    assert refused.content == "Error: 'escape_file' leads outside the root (through a symlink)"
    listed = await tools.call(ToolCall(id="c4", name="list_dir", arguments={}))
    assert "notes.txt (12 bytes)" in listed.content
