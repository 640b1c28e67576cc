"""Entry point of refactorbot-tools-exec: registers the ``exec_run`` tool."""

from __future__ import annotations

from typing import Any

from refactorbot import hookimpl

from refactorbot_tools_exec.tool import ExecRun

REFACTORBOT_API = 1


@hookimpl
def register_tools(register: Any) -> None:
    """Register the exec tool."""
    register(ExecRun)
