"""Every code tool passes the core's ``ToolContract``."""

from __future__ import annotations

from pathlib import Path

from refactorbot.testing.tool_contract import ToolContract
from refactorbot_tools_code import ApplyPatch, CodeSearch, EditFile

PLUGIN = "refactorbot_tools_code.plugin"


class TestCodeSearchContract(ToolContract):
    tool_class = CodeSearch
    plugin = PLUGIN
    config = {"embeddings": "off"}
    valid_arguments = {"query": "load config", "limit": 5}
    invalid_arguments = [{}, {"query": ""}, {"query": "?!"}, {"query": "x", "limit": 0}, {"query": "x", "other": 1}]

    def prepare(self, workspace: Path) -> None:
        (workspace / "config.py").write_text("def load_config(path):\n    return open(path).read()\n")


class TestApplyPatchContract(ToolContract):
    tool_class = ApplyPatch
    plugin = PLUGIN
    valid_arguments = {"patch": "--- a/a.txt\n+++ b/a.txt\n@@ -1 +1 @@\n-old\n+new\n"}
    invalid_arguments = [{}, {"patch": ""}, {"patch": 3}, {"patch": "x", "dry_run": "perhaps"}]

    def prepare(self, workspace: Path) -> None:
        (workspace / "a.txt").write_text("old\n")


class TestEditFileContract(ToolContract):
    tool_class = EditFile
    plugin = PLUGIN
    valid_arguments = {"path": "a.py", "edits": [{"op": "replace", "search": "1", "replace": "2"}]}
    invalid_arguments = [
        {"path": "a.py"},
        {"path": "a.py", "edits": []},
        {"path": "a.py", "edits": [{"op": "replace", "search": "x"}]},
        {"path": "a.py", "edits": [{"op": "insert", "text": "x"}]},
        {"path": "a.py", "edits": [{"op": "insert", "text": "x", "after_line": 1, "anchor": "y"}]},
        {"path": "a.py", "edits": [{"op": "append"}]},
        {"path": "a.py", "edits": [{"op": "delete"}]},
    ]

    def prepare(self, workspace: Path) -> None:
        (workspace / "a.py").write_text("x = 1\n")
