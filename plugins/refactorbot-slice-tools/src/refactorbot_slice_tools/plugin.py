"""Entry point of refactorbot-slice-tools: registers the ``tools`` slice."""

from __future__ import annotations

from typing import Any

from refactorbot import hookimpl

from refactorbot_slice_tools.slice import ToolsSlice

REFACTORBOT_API = 1


#: Operations only another slice may call: the API and the CLI route requests without a caller.
SLICE_ONLY = frozenset({"allow_workspace_root"})


@hookimpl
def before_operation(request: Any) -> str | None:
    """Refuse ``tools.allow_workspace_root`` unless another slice asks (``request.caller`` set)."""
    if request.slice_id == "tools" and request.operation in SLICE_ONLY and request.caller is None:
        return f"tools.{request.operation} is accepted only from another slice"
    return None


@hookimpl
def register_slices(register: Any) -> None:
    """Register the tools slice."""
    register(ToolsSlice)


@hookimpl
def register_dashboard_pages(register: Any) -> None:
    """Register the tools page."""
    from refactorbot import DashboardPage

    from refactorbot_slice_tools import pages

    register(
        DashboardPage(
            group="tools",
            title="Tools",
            render=pages.render_tools,
            kind="dashboard",
            url_path="tools-tools",
            icon=":material/build:",
        )
    )
