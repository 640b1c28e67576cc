"""Entry point of refactorbot-slice-communication: the slice, its webhook ingress, commands and pages."""

from __future__ import annotations

from typing import Any

from refactorbot import hookimpl

#: The plugin API versions this plugin supports.
REFACTORBOT_API = 1


@hookimpl
def register_slices(register: Any) -> None:
    """Register the communication slice."""
    from refactorbot_slice_communication.slice import CommunicationSlice

    register(CommunicationSlice)


@hookimpl
def register_routes(router: Any) -> None:
    """Serve ``/hooks/<channel>`` for every running channel that takes webhooks."""
    from refactorbot_slice_communication.webhooks import add_webhook_route

    add_webhook_route(router)


@hookimpl
def register_commands(cli: Any) -> None:
    """Add ``refactorbot send``, ``refactorbot channels`` and ``refactorbot pairing``."""
    from refactorbot_slice_communication.cli import channels_command, pairing_group, send_command

    cli.add_command(send_command)
    cli.add_command(channels_command)
    cli.add_command(pairing_group)


@hookimpl
def register_dashboard_pages(register: Any) -> None:
    """Register the channels, message log, pairing and templates pages."""
    from refactorbot import DashboardPage

    from refactorbot_slice_communication import pages

    for title, path, kind, render in (
        ("Channels", "communication-channels", "dashboard", pages.render_channels),
        ("Messages", "communication-messages", "analytics", pages.render_messages),
        ("Pairing", "communication-pairing", "config", pages.render_pairing),
        ("Templates", "communication-templates", "config", pages.render_templates),
    ):
        register(DashboardPage(group="communication", title=title, render=render, kind=kind, url_path=path))
