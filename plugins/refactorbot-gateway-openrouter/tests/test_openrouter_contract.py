from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from refactorbot.testing.gateway_contract import GatewayContract
from refactorbot.testing.model_server import ModelServer
from refactorbot_gateway_openrouter.gateway import OpenRouterGateway


class TestOpenRouterContract(GatewayContract):
    gateway_class = OpenRouterGateway
    plugin = "refactorbot_gateway_openrouter.plugin"
    model, served_model = "openrouter/contract/model-a", "contract/model-a"
    fallback_model, served_fallback_model = "openrouter/contract/model-b", "contract/model-b"

    def gateway_config(
        self, server: ModelServer, *, fallbacks: Sequence[str] = (), timeout: float = 10.0
    ) -> dict[str, Any]:
        return {
            "base_url": server.base_url,
            "api_key_env": self.api_key_env,
            "models": list(fallbacks),
            "timeout": timeout,
            "max_retries": 0,
        }
