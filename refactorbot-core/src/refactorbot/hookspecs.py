"""The whole plugin contract: every hook a refactorbot plugin can implement.

A plugin is a module named by an entry point in the ``refactorbot`` group. It declares the
API versions it supports (``REFACTORBOT_API = 1``) and implements any of these hooks with
``@refactorbot.hookimpl``. Registration hooks are called once at start with a ``register``
callback; runtime hooks may be ``async def`` — the host awaits what they return.
"""

from __future__ import annotations

from typing import Any

import pluggy

PROJECT_NAME = "refactorbot"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

#: Hooks called once at start with a ``register`` callback; one failing plugin never hides others.
REGISTRATION_HOOKS = (
    "register_slices",
    "register_channels",
    "register_tools",
    "register_gateways",
    "register_dashboard_pages",
)


# -- registration --------------------------------------------------------------------------


@hookspec
def register_slices(register: Any) -> None:
    """Register slices: call ``register(SliceClass)`` for each ``AtomicSlice`` subclass."""


@hookspec
def register_channels(register: Any) -> None:
    """Register channel adapters: call ``register(AdapterClass)`` for each ``ChannelAdapter``."""


@hookspec
def register_tools(register: Any) -> None:
    """Register agent tools: call ``register(ToolClass)`` for each ``Tool`` subclass."""


@hookspec
def register_gateways(register: Any) -> None:
    """Register LLM gateways: call ``register(GatewayClass)`` for each ``LLMGateway``."""


@hookspec
def register_dashboard_pages(register: Any) -> None:
    """Register dashboard pages: call ``register(DashboardPage(...))`` for each page."""


@hookspec
def register_routes(router: Any) -> None:
    """Add HTTP routes to the control API: ``router`` is a FastAPI ``APIRouter``."""


@hookspec
def register_commands(cli: Any) -> None:
    """Add commands to the ``refactorbot`` CLI: ``cli`` is the root ``click.Group``."""


# -- runtime -------------------------------------------------------------------------------


@hookspec
def startup(host: Any) -> Any:
    """Run once the orchestrator has started every slice; ``host`` is the ``MasterCore``."""


@hookspec
def shutdown(host: Any) -> Any:
    """Run while the orchestrator shuts down, before slices stop."""


@hookspec
def before_operation(request: Any) -> Any:
    """Inspect a ``SliceRequest`` before it runs; raising refuses the request with that error."""


@hookspec
def after_operation(request: Any, response: Any) -> Any:
    """Observe a ``SliceRequest`` and its ``SliceResponse`` once it has run."""


@hookspec(firstresult=True)
def before_llm_call(call: Any) -> Any:
    """Inspect (or re-route) an ``LLMCall`` before any request is sent; return a reason to veto it."""


@hookspec
def after_llm_call(call: Any, result: Any) -> Any:
    """Observe an ``LLMCall`` and its ``LLMResponse`` (usage, cost, latency)."""


@hookspec(firstresult=True)
def before_tool_call(call: Any) -> Any:
    """Inspect a ``ToolCall`` before it runs; return a reason string to veto it."""


@hookspec
def after_tool_call(call: Any, result: Any) -> Any:
    """Observe a ``ToolCall`` and its ``ToolResult``."""


@hookspec
def message_received(message: Any) -> Any:
    """Observe an ``IncomingMessage`` as a channel delivers it."""


@hookspec
def message_sent(message: Any) -> Any:
    """Observe an ``OutgoingMessage`` after a channel sent it."""


@hookspec(firstresult=True)
def provide_event_bus(config: Any) -> Any:
    """Return an ``EventBus`` to replace the in-memory one (``config``: ``Settings``)."""
