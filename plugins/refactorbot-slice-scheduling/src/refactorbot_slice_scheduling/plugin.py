"""Entry point of refactorbot-slice-scheduling: the slice, ``refactorbot schedule`` and the dashboard pages."""

from __future__ import annotations

from typing import Any

from refactorbot import hookimpl

#: The plugin API versions this plugin supports.
REFACTORBOT_API = 1


@hookimpl
def register_slices(register: Any) -> None:
    """Register the scheduling slice."""
    from refactorbot_slice_scheduling.slice import SchedulingSlice

    register(SchedulingSlice)


@hookimpl
def register_commands(cli: Any) -> None:
    """Add ``refactorbot schedule``."""
    from refactorbot_slice_scheduling.cli import schedule_group

    cli.add_command(schedule_group)


@hookimpl
def register_dashboard_pages(register: Any) -> None:
    """Register the jobs, history, timeline and alerts pages."""
    from refactorbot import DashboardPage

    from refactorbot_slice_scheduling import pages

    group = "scheduling"
    register(DashboardPage(group=group, title="Jobs", render=pages.render_jobs, url_path="scheduling-jobs"))
    register(DashboardPage(group=group, title="Alerts", render=pages.render_alerts, url_path="scheduling-alerts"))
    register(
        DashboardPage(
            group=group,
            title="Run history",
            render=pages.render_history,
            kind="analytics",
            url_path="scheduling-history",
        )
    )
    register(
        DashboardPage(
            group=group,
            title="Timeline",
            render=pages.render_timeline,
            kind="analytics",
            url_path="scheduling-timeline",
        )
    )
