"""Entry point of refactorbot-api: serve the control API while the orchestrator runs."""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

from refactorbot import hookimpl

if TYPE_CHECKING:
    from refactorbot import MasterCore

REFACTORBOT_API = 1

_servers: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


@hookimpl
async def startup(host: MasterCore) -> None:
    """Start the API server inside the orchestrator's event loop (unless ``[plugins.api] enabled = false``).

    One-shot commands (``refactorbot call``, ``slices``) run a host that is not serving: no server then.
    """
    if not host.serving:
        return
    from refactorbot_api.config import ApiConfig
    from refactorbot_api.server import ApiServer

    config = host.settings.section("plugins", "api", ApiConfig, host.env)
    if not config.enabled:
        return
    server = ApiServer(host, config)
    await server.start()
    _servers[host] = server


@hookimpl
async def shutdown(host: MasterCore) -> None:
    """Stop the API server and remove ``server.json``."""
    server = _servers.pop(host, None)
    if server is not None:
        await server.stop()


# -- counters for GET /metrics/prometheus ------------------------------------------------------


@hookimpl
def after_llm_call(call: Any, result: Any) -> None:
    """Count the call, its tokens and cost for ``/metrics/prometheus``."""
    from refactorbot_api.prometheus import COUNTERS

    COUNTERS.llm(call, result)


@hookimpl
def after_tool_call(call: Any, result: Any) -> None:
    """Count the tool call by outcome for ``/metrics/prometheus``."""
    from refactorbot_api.prometheus import COUNTERS

    COUNTERS.tool(call, result)


@hookimpl
def message_received(message: Any) -> None:
    """Count a chat turn's incoming message per channel for ``/metrics/prometheus``."""
    from refactorbot_api.prometheus import COUNTERS

    COUNTERS.message(message, "in")


@hookimpl
def message_sent(message: Any) -> None:
    """Count a chat turn's reply per channel for ``/metrics/prometheus``."""
    from refactorbot_api.prometheus import COUNTERS

    COUNTERS.message(message, "out")
