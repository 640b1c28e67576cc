"""Entry point of refactorbot-slice-improve: the slice, ``refactorbot improve`` and the dashboard page."""

from __future__ import annotations

from typing import Any

from refactorbot import hookimpl

#: The plugin API versions this plugin supports.
REFACTORBOT_API = 1


@hookimpl
def register_slices(register: Any) -> None:
    """Register the improve slice."""
    from refactorbot_slice_improve.slice import ImproveSlice

    register(ImproveSlice)


@hookimpl
def register_commands(cli: Any) -> None:
    """Add ``refactorbot improve``."""
    from refactorbot_slice_improve.cli import improve_group

    cli.add_command(improve_group)


@hookimpl
def register_dashboard_pages(register: Any) -> None:
    """Register the self-improvement page."""
    from refactorbot import DashboardPage

    from refactorbot_slice_improve import pages

    register(DashboardPage(group="improve", title="Self-improvement", render=pages.render_improve, url_path="improve"))
