"""Entry point of refactorbot-gateway-openrouter: registers the ``openrouter`` gateway.

Importing this module never imports httpx; the gateway does on its first call.
"""

from __future__ import annotations

from typing import Any

from refactorbot import hookimpl

from refactorbot_gateway_openrouter.gateway import OpenRouterGateway

#: The plugin API versions this plugin supports.
REFACTORBOT_API = 1


@hookimpl
def register_gateways(register: Any) -> None:
    """Register the OpenRouter gateway."""
    register(OpenRouterGateway)
