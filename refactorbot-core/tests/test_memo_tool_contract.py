"""``ToolContract`` and the workspace fixtures of the testing kit, run against ``notes_append`` (tests/memo_tool.py)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from memo_tool import AppendParams, NotesAppend
from refactorbot.testing.tool_contract import ToolContract
from refactorbot.testing.tool_fixtures import ctx, outside, sentinel, workspace  # noqa: F401
from refactorbot.tools import ToolContext

HERE = str(Path(__file__).parent)


class TestNotesAppendContract(ToolContract):
    tool_class = NotesAppend
    plugin = "memo_tool"
    valid_arguments = {"path": "notes/today.md", "line": "call the plumber"}
    invalid_arguments = [{}, {"path": "", "line": "x"}, {"path": "a.md"}, {"path": 3, "line": "x"}]

    @pytest.fixture(autouse=True)
    def importable(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The import-cost check imports the plugin in a fresh interpreter: it finds it on PYTHONPATH."""
        monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (HERE, os.environ.get("PYTHONPATH", "")) if p))


@pytest.mark.asyncio
async def test_an_escape_writes_nothing_outside_the_workspace(
    ctx: ToolContext,  # noqa: F811
    workspace: Path,  # noqa: F811
    sentinel: Path,  # noqa: F811
    outside: Callable[[], dict[str, object]],  # noqa: F811
) -> None:
    before = outside()
    assert before["sentinel/secret.txt"] == b"do not touch\n" and before["sentinel/sub"] == "dir"
    os.symlink(sentinel, workspace / "link")
    tool = NotesAppend({})
    for path in ("../sentinel/secret.txt", "link/secret.txt", str(sentinel / "new.txt")):
        result = await tool.run(AppendParams(path=path, line="pwned"), ctx)
        assert result.error == f"{path} is outside the workspace"
    broken = await tool.run(AppendParams(path="a.md", line="two\nlines"), ctx)
    assert broken.error == "the line holds a line break"
    assert outside() == before  # the link lives in the workspace; nothing beside it changed
    done = await tool.run(AppendParams(path="a.md", line="fine"), ctx)
    assert (done.error, done.output, (workspace / "a.md").read_text()) == (None, "appended to a.md", "fine\n")
