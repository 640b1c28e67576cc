"""``exec_run`` passes the core's ``ToolContract``."""

from __future__ import annotations

from refactorbot.testing.tool_contract import ToolContract
from refactorbot_tools_exec import ExecRun


class TestExecRunContract(ToolContract):
    tool_class = ExecRun
    plugin = "refactorbot_tools_exec.plugin"
    valid_arguments = {"command": ["echo", "hello"], "cwd": "."}
    invalid_arguments = [{}, {"command": 5}, {"command": "ls", "timeout": 0}, {"command": "ls", "shell": True}]
