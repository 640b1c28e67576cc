"""Entry point of refactorbot-tools-files: registers the ``files_*`` tools."""

from __future__ import annotations

from typing import Any

from refactorbot import hookimpl

from refactorbot_tools_files.tools import ALL_TOOLS

REFACTORBOT_API = 1


@hookimpl
def register_tools(register: Any) -> None:
    """Register the files tools."""
    for tool in ALL_TOOLS:
        register(tool)
