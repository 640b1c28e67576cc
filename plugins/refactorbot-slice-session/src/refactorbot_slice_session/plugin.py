"""Entry point of refactorbot-slice-session: registers the ``session`` slice."""

from __future__ import annotations

from typing import Any

from refactorbot import hookimpl

REFACTORBOT_API = 1


@hookimpl
def register_slices(register: Any) -> None:
    """Register ``SessionSlice``."""
    from refactorbot_slice_session.slice import SessionSlice

    register(SessionSlice)


@hookimpl
def register_dashboard_pages(register: Any) -> None:
    """Register the sessions page."""
    from refactorbot import DashboardPage

    from refactorbot_slice_session import pages

    register(
        DashboardPage(
            group="session",
            title="Sessions",
            render=pages.render_sessions,
            kind="dashboard",
            url_path="session-sessions",
            icon=":material/forum:",
        )
    )
