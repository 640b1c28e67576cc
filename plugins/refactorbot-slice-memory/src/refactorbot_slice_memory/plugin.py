"""Entry point of refactorbot-slice-memory: registers the ``memory`` slice."""

from __future__ import annotations

from typing import Any

from refactorbot import hookimpl

REFACTORBOT_API = 1


@hookimpl
def register_slices(register: Any) -> None:
    """Register ``MemorySlice``."""
    from refactorbot_slice_memory.slice import MemorySlice

    register(MemorySlice)


@hookimpl
def register_dashboard_pages(register: Any) -> None:
    """Register the memories page."""
    from refactorbot import DashboardPage

    from refactorbot_slice_memory import pages

    register(
        DashboardPage(
            group="memory",
            title="Memories",
            render=pages.render_memories,
            kind="dashboard",
            url_path="memory-memories",
            icon=":material/psychology:",
        )
    )
