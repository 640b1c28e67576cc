"""Every files tool passes the core's ``ToolContract``."""

from __future__ import annotations

from pathlib import Path

from refactorbot.testing.tool_contract import ToolContract
from refactorbot_tools_files import FilesDelete, FilesList, FilesRead, FilesReplace, FilesWrite

PLUGIN = "refactorbot_tools_files.plugin"


class TestFilesReadContract(ToolContract):
    tool_class = FilesRead
    plugin = PLUGIN
    valid_arguments = {"path": "notes.txt", "start_line": 1, "end_line": 2}
    invalid_arguments = [{}, {"path": 3}, {"path": ""}, {"path": "a", "start_line": 0}, {"path": "a", "x": 1}]

    def prepare(self, workspace: Path) -> None:
        (workspace / "notes.txt").write_text("one\ntwo\nthree\n")


class TestFilesWriteContract(ToolContract):
    tool_class = FilesWrite
    plugin = PLUGIN
    valid_arguments = {"path": "out/new.txt", "content": "hello"}
    invalid_arguments = [
        {"path": "a"},
        {"content": "x"},
        {"path": "a", "content": 5},
        {"path": "a", "content": "x", "overwrite": "maybe"},
    ]


class TestFilesReplaceContract(ToolContract):
    tool_class = FilesReplace
    plugin = PLUGIN
    valid_arguments = {"path": "code.py", "search": "old", "replace": "new"}
    invalid_arguments = [
        {"path": "a", "search": "", "replace": "x"},
        {"path": "a", "replace": "x"},
        {"path": "a", "search": "x"},
    ]

    def prepare(self, workspace: Path) -> None:
        (workspace / "code.py").write_text("value = 'old'\n")


class TestFilesListContract(ToolContract):
    tool_class = FilesList
    plugin = PLUGIN
    valid_arguments = {"path": ".", "recursive": True}
    invalid_arguments = [{"recursive": "deep"}, {"max_entries": 0}, {"path": ""}]


class TestFilesDeleteContract(ToolContract):
    tool_class = FilesDelete
    plugin = PLUGIN
    valid_arguments = {"path": "old.txt"}
    invalid_arguments = [{}, {"path": None}, {"path": "a", "directory": "yes please"}]

    def prepare(self, workspace: Path) -> None:
        (workspace / "old.txt").write_text("bye")
