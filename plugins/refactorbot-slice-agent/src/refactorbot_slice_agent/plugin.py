"""Entry point of refactorbot-slice-agent: the ``agent`` slice and the ``chat`` and ``demo`` commands."""

from __future__ import annotations

from typing import Any

from refactorbot import hookimpl

REFACTORBOT_API = 1


@hookimpl
def register_slices(register: Any) -> None:
    """Register ``AgentSlice``."""
    from refactorbot_slice_agent.slice import AgentSlice

    register(AgentSlice)


@hookimpl
def register_commands(cli: Any) -> None:
    """Add ``refactorbot chat`` and ``refactorbot demo``."""
    from refactorbot_slice_agent.cli import chat, demo

    cli.add_command(chat)
    cli.add_command(demo)


@hookimpl
def register_dashboard_pages(register: Any) -> None:
    """Register the executions and prompts pages."""
    from refactorbot import DashboardPage

    from refactorbot_slice_agent import pages

    register(
        DashboardPage(
            group="agent",
            title="Executions",
            render=pages.render_executions,
            kind="dashboard",
            url_path="agent-executions",
            icon=":material/smart_toy:",
        )
    )
    register(
        DashboardPage(
            group="agent",
            title="Prompts",
            render=pages.render_prompts,
            kind="config",
            url_path="agent-prompts",
            icon=":material/edit_note:",
        )
    )
