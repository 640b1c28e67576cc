"""Entry point of refactorbot-dashboard: adds ``refactorbot dashboard`` to the CLI."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from refactorbot import hookimpl

if TYPE_CHECKING:
    import click

REFACTORBOT_API = 1


@hookimpl
def register_commands(cli: click.Group) -> None:
    """Add the ``dashboard`` command."""
    import click

    @cli.command("dashboard")
    @click.option("--port", default=8501, show_default=True, type=click.IntRange(1, 65535), help="Port on 127.0.0.1.")
    @click.option("--page", "start_page", default=None, help="URL path of the page to open first (e.g. logs).")
    @click.pass_obj
    def dashboard(env: Any, port: int, start_page: str | None) -> None:
        """Open the Streamlit dashboard of the running server (start one with `refactorbot serve`)."""
        from refactorbot_dashboard.launcher import launch

        raise SystemExit(launch(env.home, port=port, start_page=start_page))
