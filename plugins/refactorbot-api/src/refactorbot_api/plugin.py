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
