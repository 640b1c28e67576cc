"""The whole plugin contract: every hook a refactorbot plugin can implement.

A plugin is a module named by an entry point in the ``refactorbot`` group. It declares the
API versions it supports (``REFACTORBOT_API = 1``; a plugin that declares none loads, with a
warning) and implements any of these hooks with ``@refactorbot.hookimpl``. Registration hooks are
called once at start with a ``register`` callback; runtime hooks may be ``async def`` — the host
awaits what they return. The host calls every implementation itself, so pluggy hook wrappers
(``wrapper=True``, ``hookwrapper=True``) are refused at load.

The veto hooks (``VETO_HOOKS``) share one convention: return ``None`` to allow, a non-empty
string (the reason) to refuse. docs/hooks.md says who calls each hook, when and how often.

The types below are for readers and type checkers only (``TYPE_CHECKING``): importing this
module imports nothing but pluggy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping
    from os import PathLike
    from typing import TypeAlias

    import click
    from fastapi import APIRouter

    from refactorbot._isolation import SliceTransport
    from refactorbot.channels import ChannelAdapter
    from refactorbot.config import Settings
    from refactorbot.dashboard import DashboardPage
    from refactorbot.events import EventBus
    from refactorbot.llm import LLMCall, LLMGateway, LLMResponse
    from refactorbot.master import MasterCore
    from refactorbot.models import IncomingMessage, OutgoingMessage, SliceRequest, SliceResponse
    from refactorbot.singletons import OnAcquired, OnLost, SingletonLease
    from refactorbot.slice import AtomicSlice
    from refactorbot.tools import Tool, ToolCall, ToolResult
    from refactorbot.tracing import Tracer

    #: What a veto hook returns, or an awaitable of it: ``None`` allows, a non-empty reason refuses.
    Veto: TypeAlias = str | Awaitable[str | None] | None
    #: What an observing runtime hook returns: nothing, or an awaitable of nothing.
    Observed: TypeAlias = Awaitable[None] | None

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
    "register_skills",
)

#: Hooks that may refuse what they inspect: ``None`` allows, a non-empty string refuses with that reason.
VETO_HOOKS = ("before_operation", "before_llm_call", "before_tool_call")


# -- registration --------------------------------------------------------------------------


@hookspec
def register_slices(register: Callable[[type[AtomicSlice]], None]) -> None:
    """Register slices: call ``register(SliceClass)`` for each ``AtomicSlice`` subclass."""


@hookspec
def register_channels(register: Callable[[type[ChannelAdapter]], None]) -> None:
    """Register channel adapters: call ``register(AdapterClass)`` for each ``ChannelAdapter``."""


@hookspec
def register_tools(register: Callable[[type[Tool]], None]) -> None:
    """Register agent tools: call ``register(ToolClass)`` for each ``Tool`` subclass."""


@hookspec
def register_gateways(register: Callable[[type[LLMGateway]], None]) -> None:
    """Register LLM gateways: call ``register(GatewayClass)`` for each ``LLMGateway``."""


@hookspec
def register_dashboard_pages(register: Callable[[DashboardPage], None]) -> None:
    """Register dashboard pages: call ``register(DashboardPage(...))`` for each page."""


@hookspec
def register_skills(register: Callable[[str | PathLike[str]], None]) -> None:
    """Register skill packs: call ``register(path)`` with each folder of skills the distribution ships."""


@hookspec
def register_routes(router: APIRouter) -> None:
    """Add HTTP routes to the control API: ``router`` is a FastAPI ``APIRouter``."""


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add commands to the ``refactorbot`` CLI: ``cli`` is the root ``click.Group``."""


# -- runtime -------------------------------------------------------------------------------


@hookspec
def startup(host: MasterCore) -> Observed:
    """Run once every slice started (``host``: the ``MasterCore``); a failure is one log line: plugin, cause."""


@hookspec
def shutdown(host: MasterCore) -> Observed:
    """Run while the orchestrator shuts down, before slices stop."""


@hookspec(firstresult=True)
def before_operation(request: SliceRequest) -> Veto:
    """Inspect a ``SliceRequest`` before it runs; return a reason string to refuse it, ``None`` to allow."""


@hookspec
def after_operation(request: SliceRequest, response: SliceResponse) -> Observed:
    """Observe a ``SliceRequest`` and its ``SliceResponse`` once it has run (``stop`` waits for it, bounded)."""


@hookspec(firstresult=True)
def before_llm_call(call: LLMCall) -> Veto:
    """Inspect (or re-route) an ``LLMCall`` before any request is sent; return a reason string to refuse it."""


@hookspec
def after_llm_call(call: LLMCall, result: LLMResponse) -> Observed:
    """Observe an ``LLMCall`` and its ``LLMResponse`` (usage, cost, latency)."""


@hookspec(firstresult=True)
def before_tool_call(call: ToolCall) -> Veto:
    """Inspect a ``ToolCall`` before it runs; return a reason string to refuse it, ``None`` to allow."""


@hookspec
def after_tool_call(call: ToolCall, result: ToolResult) -> Observed:
    """Observe a ``ToolCall`` and its ``ToolResult``."""


@hookspec
def message_received(message: IncomingMessage) -> Observed:
    """Observe an ``IncomingMessage`` as a chat turn begins."""


@hookspec
def message_sent(message: OutgoingMessage) -> Observed:
    """Observe the ``OutgoingMessage`` a chat turn answers with."""


@hookspec(firstresult=True)
def provide_event_bus(config: Settings, env: Mapping[str, str]) -> EventBus | Awaitable[EventBus | None] | None:
    """Return an ``EventBus`` to replace the in-memory one (``config``: ``Settings``, ``env``: the host's), or ``None``."""


@hookspec(firstresult=True)
def provide_tracer(config: Settings, env: Mapping[str, str]) -> Tracer | Awaitable[Tracer | None] | None:
    """Return a ``refactorbot.tracing.Tracer`` to trace this host's work (``config``: ``Settings``), or ``None``."""


@hookspec(firstresult=True)
def provide_slice_transport(
    slice_id: str, location: str, config: Settings, env: Mapping[str, str]
) -> SliceTransport | Awaitable[SliceTransport | None] | None:
    """Return a ``SliceTransport`` serving ``slice_id`` at ``location`` (not ``local``), or ``None``."""


@hookspec(firstresult=True)
def provide_singleton_lease(
    name: str, on_acquired: OnAcquired, on_lost: OnLost, config: Settings, env: Mapping[str, str]
) -> SingletonLease | Awaitable[SingletonLease | None] | None:
    """Return a ``SingletonLease`` for ``name`` shared by every host of the deployment, or ``None`` (one process)."""
