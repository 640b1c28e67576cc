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

    group = "communication"
    register(
        DashboardPage(
            group=group,
            title="Channels",
            render=pages.render_channels,
            kind="dashboard",
            url_path="communication-channels",
        )
    )
    register(
        DashboardPage(
            group=group,
            title="Messages",
            render=pages.render_messages,
            kind="analytics",
            url_path="communication-messages",
        )
    )
    register(
        DashboardPage(
            group=group, title="Pairing", render=pages.render_pairing, kind="config", url_path="communication-pairing"
        )
    )
    register(
        DashboardPage(
            group=group,
            title="Templates",
            render=pages.render_templates,
            kind="config",
            url_path="communication-templates",
        )
    )
