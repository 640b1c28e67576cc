"""Entry point of refactorbot-slice-refactory: the slice, ``refactorbot refactory``, its routes and pages."""

from __future__ import annotations

from typing import Any

from refactorbot import hookimpl

#: The plugin API versions this plugin supports.
REFACTORBOT_API = 1


@hookimpl
def register_slices(register: Any) -> None:
    """Register the refactory slice."""
    from refactorbot_slice_refactory.slice import RefactorySlice

    register(RefactorySlice)


@hookimpl
def register_commands(cli: Any) -> None:
    """Add ``refactorbot refactory``."""
    from refactorbot_slice_refactory.cli import refactory_group

    cli.add_command(refactory_group)


@hookimpl
def register_routes(router: Any) -> None:
    """Serve the workflow under ``/plugins/refactory/`` (bearer token required)."""
    from refactorbot_slice_refactory.routes import add_routes

    add_routes(router)


@hookimpl
def register_dashboard_pages(register: Any) -> None:
    """Register the plan board, the task page and the merge queue."""
    from refactorbot import DashboardPage

    from refactorbot_slice_refactory import pages

    register(
        DashboardPage(group="refactory", title="Plan board", render=pages.render_board, url_path="refactory-board")
    )
    register(DashboardPage(group="refactory", title="Task", render=pages.render_task, url_path="refactory-task"))
    register(
        DashboardPage(group="refactory", title="Merge queue", render=pages.render_queue, url_path="refactory-queue")
    )
