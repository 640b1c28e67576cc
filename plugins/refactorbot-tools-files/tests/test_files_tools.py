"""Behaviour of the files tools inside the workspace."""

from __future__ import annotations

from pathlib import Path

import pytest
from refactorbot.errors import ToolError
from refactorbot.tools import ToolContext
from refactorbot_tools_files import FilesDelete, FilesList, FilesRead, FilesReplace, FilesWrite


async def run(tool, ctx, **arguments):
    return await tool.run(tool.Params.model_validate(arguments), ctx)


@pytest.mark.asyncio
async def test_write_then_read_roundtrip(workspace: Path, ctx: ToolContext) -> None:
    result = await run(FilesWrite(), ctx, path="src/app.py", content="print('hi')\n")
    assert result.ok and result.data == {"path": "src/app.py", "bytes": 12, "created": True}
    assert (workspace / "src" / "app.py").read_text() == "print('hi')\n"
    read = await run(FilesRead(), ctx, path="src/app.py")
    assert read.output == "print('hi')\n"
    assert read.data["total_lines"] == 1
    again = await run(FilesWrite(), ctx, path="src/app.py", content="x")
    assert again.output == "replaced src/app.py (1 bytes)" and again.data["created"] is False


@pytest.mark.asyncio
async def test_write_refusals(workspace: Path, ctx: ToolContext) -> None:
    (workspace / "keep.txt").write_text("old")
    (workspace / "folder").mkdir()
    with pytest.raises(ToolError, match="already exists; set overwrite=true"):
        await run(FilesWrite(), ctx, path="keep.txt", content="new", overwrite=False)
    assert (workspace / "keep.txt").read_text() == "old"
    with pytest.raises(ToolError, match="is a directory"):
        await run(FilesWrite(), ctx, path="folder", content="x")
    with pytest.raises(ToolError, match="is a directory"):
        await run(FilesWrite(), ctx, path=".", content="x")
    with pytest.raises(ToolError, match="does not exist; set create_dirs=true"):
        await run(FilesWrite(), ctx, path="nope/x.txt", content="x", create_dirs=False)
    with pytest.raises(ToolError, match="over the 10-byte limit"):
        await run(FilesWrite({"max_file_bytes": 10}), ctx, path="big.txt", content="x" * 11)
    assert not (workspace / "big.txt").exists()


@pytest.mark.asyncio
async def test_read_line_ranges_and_caps(workspace: Path, ctx: ToolContext) -> None:
    (workspace / "lines.txt").write_text("".join(f"line {i}\n" for i in range(1, 101)))
    part = await run(FilesRead(), ctx, path="lines.txt", start_line=10, end_line=12)
    assert part.output == "line 10\nline 11\nline 12\n"
    assert part.data["start_line"] == 10 and part.data["end_line"] == 12 and part.data["total_lines"] is None
    tail = await run(FilesRead(), ctx, path="lines.txt", start_line=99)
    assert tail.output == "line 99\nline 100\n" and tail.data["total_lines"] == 100
    capped = await run(FilesRead({"max_read_bytes": 30}), ctx, path="lines.txt")
    assert capped.data["truncated"] is True
    assert capped.output.startswith("line 1\nline 2\nline 3\nline 4\n")
    assert "read more with start_line=5" in capped.output
    with pytest.raises(ToolError, match="over the 100-byte limit; read part of it"):
        await run(FilesRead({"max_file_bytes": 100}), ctx, path="lines.txt")
    ranged = await run(FilesRead({"max_file_bytes": 100}), ctx, path="lines.txt", start_line=50, end_line=50)
    assert ranged.output == "line 50\n"
    with pytest.raises(ValueError, match="end_line must not be before start_line"):
        FilesRead.Params.model_validate({"path": "x", "start_line": 5, "end_line": 2})


@pytest.mark.asyncio
async def test_read_refusals(workspace: Path, ctx: ToolContext) -> None:
    (workspace / "bin.dat").write_bytes(b"\x89PNG\x00\x00data")
    (workspace / "folder").mkdir()
    with pytest.raises(ToolError, match="binary file"):
        await run(FilesRead(), ctx, path="bin.dat")
    with pytest.raises(ToolError, match="is a directory; use files_list"):
        await run(FilesRead(), ctx, path="folder")
    with pytest.raises(ToolError, match="'missing.txt' does not exist"):
        await run(FilesRead(), ctx, path="missing.txt")


@pytest.mark.asyncio
async def test_replace_exact_once_or_all(workspace: Path, ctx: ToolContext) -> None:
    target = workspace / "code.py"
    target.write_text("a = 1\nb = 1\nc = 2\n")
    with pytest.raises(ToolError, match="occurs 2 times"):
        await run(FilesReplace(), ctx, path="code.py", search="= 1", replace="= 3")
    assert target.read_text() == "a = 1\nb = 1\nc = 2\n"
    with pytest.raises(ToolError, match="not found"):
        await run(FilesReplace(), ctx, path="code.py", search="d = 4", replace="x")
    one = await run(FilesReplace(), ctx, path="code.py", search="c = 2", replace="c = 5")
    assert one.data["replaced"] == 1 and one.output == "replaced 1 occurrence in code.py"
    both = await run(FilesReplace(), ctx, path="code.py", search="= 1", replace="= 3", all=True)
    assert both.data["replaced"] == 2
    assert target.read_text() == "a = 3\nb = 3\nc = 5\n"
    multi = await run(FilesReplace(), ctx, path="code.py", search="a = 3\nb = 3\n", replace="ab = 6\n")
    assert multi.ok and target.read_text() == "ab = 6\nc = 5\n"
    (workspace / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(ToolError, match="not UTF-8"):
        await run(FilesReplace(), ctx, path="latin1.txt", search="caf", replace="x")


@pytest.mark.asyncio
async def test_list_plain_recursive_and_capped(workspace: Path, ctx: ToolContext, sentinel: Path) -> None:
    (workspace / "b.txt").write_text("12345")
    (workspace / "a").mkdir()
    (workspace / "a" / "inner.txt").write_text("x")
    (workspace / "out").symlink_to(sentinel)
    flat = await run(FilesList(), ctx)
    assert flat.output.splitlines() == ["a/", "b.txt (5 bytes)", "out (symlink)"]
    deep = await run(FilesList(), ctx, recursive=True)
    paths = [e["path"] for e in deep.data["entries"]]
    assert paths == ["a", "b.txt", "out", "a/inner.txt"]
    assert not any("secret" in p for p in paths)  # symlinked folders are never entered
    capped = await run(FilesList({"max_list_entries": 2}), ctx, recursive=True, max_entries=50)
    assert capped.data["truncated"] is True and len(capped.data["entries"]) == 2
    sub = await run(FilesList(), ctx, path="a")
    assert sub.output == "inner.txt (1 bytes)"
    (workspace / "empty").mkdir()
    assert (await run(FilesList(), ctx, path="empty")).output == "'empty' is empty"
    with pytest.raises(ToolError, match="is not a folder"):
        await run(FilesList(), ctx, path="b.txt")


@pytest.mark.asyncio
async def test_delete_files_links_and_empty_folders(workspace: Path, ctx: ToolContext) -> None:
    (workspace / "f.txt").write_text("x")
    (workspace / "full").mkdir()
    (workspace / "full" / "x").write_text("x")
    (workspace / "empty").mkdir()
    (workspace / "target.txt").write_text("keep")
    (workspace / "link").symlink_to("target.txt")
    assert (await run(FilesDelete(), ctx, path="f.txt")).output == "deleted file f.txt"
    assert not (workspace / "f.txt").exists()
    with pytest.raises(ToolError, match="is a folder; set directory=true"):
        await run(FilesDelete(), ctx, path="empty")
    with pytest.raises(ToolError, match="not empty"):
        await run(FilesDelete(), ctx, path="full", directory=True)
    assert (workspace / "full" / "x").exists()
    assert (await run(FilesDelete(), ctx, path="empty/", directory=True)).output == "deleted folder empty"
    assert (await run(FilesDelete(), ctx, path="link")).output == "deleted symlink link"
    assert (workspace / "target.txt").read_text() == "keep"
    with pytest.raises(ToolError, match="workspace itself cannot be deleted"):
        await run(FilesDelete(), ctx, path=".", directory=True)
    with pytest.raises(ToolError, match="does not exist"):
        await run(FilesDelete(), ctx, path="ghost.txt")
