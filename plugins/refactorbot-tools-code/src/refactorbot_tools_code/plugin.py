"""Entry point of refactorbot-tools-code: registers ``code_search``, ``apply_patch`` and ``edit_file``."""

from __future__ import annotations

from typing import Any

from refactorbot import hookimpl

from refactorbot_tools_code.tools import ALL_TOOLS

REFACTORBOT_API = 1


@hookimpl
def register_tools(register: Any) -> None:
    """Register the code tools."""
    for tool in ALL_TOOLS:
        register(tool)
