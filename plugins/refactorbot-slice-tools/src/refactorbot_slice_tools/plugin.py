"""Entry point of refactorbot-slice-tools: registers the ``tools`` slice."""

from __future__ import annotations

from typing import Any

from refactorbot import hookimpl

from refactorbot_slice_tools.slice import ToolsSlice

REFACTORBOT_API = 1


@hookimpl
def register_slices(register: Any) -> None:
    """Register the tools slice."""
    register(ToolsSlice)
