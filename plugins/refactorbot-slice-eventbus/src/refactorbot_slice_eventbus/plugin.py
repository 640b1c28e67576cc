"""Entry point of refactorbot-slice-eventbus: the durable bus, its slice, commands and pages."""

from __future__ import annotations

import logging
from typing import Any

from refactorbot import hookimpl

#: The plugin API versions this plugin supports.
REFACTORBOT_API = 1

log = logging.getLogger("refactorbot.slice.eventbus")


@hookimpl
def provide_event_bus(config: Any, env: Any) -> Any:
    """Return the durable bus of the home, unless the slice is disabled or another process runs it.

    In those cases the host keeps its in-memory bus, and this says why in the log.
    """
    if not config.slice_enabled("eventbus"):
        return None
    from refactorbot_slice_eventbus.bus import BusLocked, DurableEventBus
    from refactorbot_slice_eventbus.config import EventBusConfig
    from refactorbot_slice_eventbus.slice import EventBusSlice

    bus = DurableEventBus(config.home, config.slice_config("eventbus", EventBusConfig, env), EventBusSlice.migrations())
    try:
        bus.acquire()
    except BusLocked as exc:
        log.warning("%s; this process uses the in-memory event bus", exc)
        return None
    return bus


@hookimpl
def register_slices(register: Any) -> None:
    """Register the eventbus slice."""
    from refactorbot_slice_eventbus.slice import EventBusSlice

    register(EventBusSlice)


@hookimpl
def register_commands(cli: Any) -> None:
    """Add ``refactorbot events``."""
    from refactorbot_slice_eventbus.cli import events_group

    cli.add_command(events_group)


@hookimpl
def register_dashboard_pages(register: Any) -> None:
    """Register the event bus overview and dead letters pages."""
    from refactorbot import DashboardPage

    from refactorbot_slice_eventbus import pages

    register(
        DashboardPage(
            group="eventbus", title="Event bus", render=pages.render_overview, kind="dashboard", url_path="eventbus"
        )
    )
    register(
        DashboardPage(
            group="eventbus",
            title="Dead letters",
            render=pages.render_dead_letters,
            kind="dashboard",
            url_path="eventbus-dead-letters",
        )
    )
