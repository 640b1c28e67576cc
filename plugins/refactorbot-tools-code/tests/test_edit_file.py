"""``edit_file``: several edits to one file, in order, all or none; Python results must parse."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from refactorbot import ToolError
from refactorbot.tools import ToolContext
from refactorbot_tools_code import EditFile

SOURCE = "import os\n\n\ndef area(w, h):\n    return w * h\n\n\ndef perimeter(w, h):\n    return 2 * (w + h)\n"


async def edit(ctx: ToolContext, path: str, *edits: dict[str, Any], **extra: Any) -> str:
    tool = EditFile({})
    result = await tool.run(tool.Params.model_validate({"path": path, "edits": list(edits), **extra}), ctx)
    assert result.ok, result.error
    return result.output


@pytest.mark.asyncio
async def test_several_edits_in_order(workspace: Path, ctx: ToolContext) -> None:
    (workspace / "geo.py").write_text(SOURCE)
    output = await edit(
        ctx,
        "geo.py",
        {"op": "replace", "search": "w, h", "replace": "width, height", "all": True},
        {"op": "replace", "search": "return w * h", "replace": "return width * height"},
        {"op": "replace", "search": "2 * (w + h)", "replace": "2 * (width + height)"},
        {"op": "insert", "after_line": 1, "text": "import math"},
        {"op": "insert", "anchor": "def perimeter(width, height):\n", "text": '    """The perimeter."""'},
        {"op": "append", "text": "\n\nUNIT = 'm'"},
    )
    assert "replaced 2 occurrences" in output and "inserted after line 1" in output and "appended" in output
    assert (workspace / "geo.py").read_text() == (
        "import os\nimport math\n\n\ndef area(width, height):\n    return width * height\n\n\n"
        'def perimeter(width, height):\n    """The perimeter."""\n    return 2 * (width + height)\n\n\nUNIT = \'m\'\n'
    )


@pytest.mark.parametrize(
    ("edits", "reason"),
    [
        ([{"op": "replace", "search": "nowhere", "replace": "x"}], "edit 1 \\(replace\\): search text not found"),
        ([{"op": "replace", "search": "return", "replace": "yield"}], "occurs 2 times"),
        (
            [{"op": "append", "text": "X = 1"}, {"op": "insert", "after_line": 99, "text": "y"}],
            "edit 2 \\(insert\\): line 99 is past the end",
        ),
        ([{"op": "insert", "anchor": "def", "text": "x"}], "anchor found 2 times"),
        ([{"op": "insert", "anchor": "class", "text": "x"}], "anchor not found"),
        ([{"op": "replace", "search": "return w * h", "replace": "return w *"}], "geo.py:5:.*invalid syntax"),
    ],
)
@pytest.mark.asyncio
async def test_any_failing_edit_writes_nothing(
    workspace: Path, ctx: ToolContext, edits: list[Any], reason: str
) -> None:
    (workspace / "geo.py").write_text(SOURCE)
    tool = EditFile({})
    with pytest.raises(ToolError, match=reason) as caught:
        await tool.run(tool.Params.model_validate({"path": "geo.py", "edits": edits}), ctx)
    assert "nothing was written" in str(caught.value) and "\n" not in str(caught.value)
    assert (workspace / "geo.py").read_text() == SOURCE


@pytest.mark.asyncio
async def test_syntax_errors_can_be_allowed_and_old_breakage_does_not_block(workspace: Path, ctx: ToolContext) -> None:
    (workspace / "geo.py").write_text(SOURCE)
    output = await edit(ctx, "geo.py", {"op": "append", "text": "def broken(:"}, allow_syntax_errors=True)
    assert "written although not valid Python: geo.py:10:" in output
    # the file is broken already: an unrelated edit is not blocked by it
    await edit(ctx, "geo.py", {"op": "replace", "search": "import os", "replace": "import sys"})
    assert (workspace / "geo.py").read_text().startswith("import sys\n")


@pytest.mark.asyncio
async def test_crlf_files_keep_their_line_endings(workspace: Path, ctx: ToolContext) -> None:
    (workspace / "w.txt").write_bytes(b"one\r\ntwo\r\nthree\r\n")
    await edit(
        ctx,
        "w.txt",
        {"op": "replace", "search": "one\ntwo", "replace": "1\n2"},
        {"op": "insert", "after_line": 2, "text": "2.5"},
        {"op": "append", "text": "four"},
    )
    assert (workspace / "w.txt").read_bytes() == b"1\r\n2\r\n2.5\r\nthree\r\nfour\r\n"


@pytest.mark.asyncio
async def test_append_to_a_file_without_final_newline(workspace: Path, ctx: ToolContext) -> None:
    (workspace / "n.txt").write_bytes(b"last")
    await edit(ctx, "n.txt", {"op": "append", "text": "more"})
    assert (workspace / "n.txt").read_bytes() == b"last\nmore\n"


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("../x.py", "'..' is not allowed"),
        (".git/config", "version-control metadata"),
        ("link/secret.txt", "points outside the workspace"),
        ("missing.py", "does not exist"),
        ("img.bin", "binary file"),
        (".", "is a folder"),
    ],
)
@pytest.mark.asyncio
async def test_refused_paths(
    workspace: Path, ctx: ToolContext, repo, sentinel: Path, outside, path: str, reason: str
) -> None:
    (workspace / "link").symlink_to(sentinel)
    (workspace / "img.bin").write_bytes(b"\x89PNG\x00\x00data")
    around = outside()
    tool = EditFile({})
    with pytest.raises(ToolError, match=reason):
        await tool.run(tool.Params.model_validate({"path": path, "edits": [{"op": "append", "text": "x"}]}), ctx)
    assert outside() == around
