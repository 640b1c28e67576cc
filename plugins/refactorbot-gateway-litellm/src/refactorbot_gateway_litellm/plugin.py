"""Entry point of refactorbot-gateway-litellm: registers the ``litellm`` gateway.

Importing this module never imports LiteLLM; the gateway does on its first call.
"""

from __future__ import annotations

from typing import Any

from refactorbot import hookimpl

from refactorbot_gateway_litellm.gateway import LiteLLMGateway

#: The plugin API versions this plugin supports.
REFACTORBOT_API = 1


@hookimpl
def register_gateways(register: Any) -> None:
    """Register the LiteLLM gateway."""
    register(LiteLLMGateway)
