"""Entry point of refactorbot-slice-providers: the slice, its LLM hooks and the CLI commands.

The hooks act through the running ``ProvidersSlice`` (registered in its ``initialize``, removed
in its ``shutdown``): budgets, unknown models and missing key variables veto a call before any request
is sent, and every answered call is logged with its cost.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from refactorbot import hookimpl

if TYPE_CHECKING:  # the slice module (pydantic models) loads when a hook first runs, not at import
    from refactorbot import LLMCall, LLMResponse

#: The plugin API versions this plugin supports.
REFACTORBOT_API = 1


@hookimpl
def register_slices(register: Any) -> None:
    """Register the providers slice."""
    from refactorbot_slice_providers.slice import ProvidersSlice

    register(ProvidersSlice)


@hookimpl
async def before_llm_call(call: LLMCall) -> str | None:
    """Return a reason to refuse ``call`` (budget spent, unknown model, missing key variable)."""
    from refactorbot_slice_providers.slice import ProvidersSlice

    instance = ProvidersSlice.current()
    return None if instance is None else await instance.veto_reason(call)


@hookimpl
async def after_llm_call(call: LLMCall, result: LLMResponse) -> None:
    """Log the call's tokens, cost and latency."""
    from refactorbot_slice_providers.slice import ProvidersSlice

    instance = ProvidersSlice.current()
    if instance is not None:
        await instance.record_result(call, result)


@hookimpl
def register_commands(cli: Any) -> None:
    """Add ``refactorbot models`` and ``refactorbot spend``."""
    from refactorbot_slice_providers.cli import add_commands

    add_commands(cli)


@hookimpl
def register_dashboard_pages(register: Any) -> None:
    """Register the models, budgets and spend page."""
    from refactorbot import DashboardPage

    from refactorbot_slice_providers import pages

    register(
        DashboardPage(
            group="providers",
            title="Models and spend",
            render=pages.render_providers,
            kind="dashboard",
            url_path="providers-spend",
            icon=":material/payments:",
        )
    )
