from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from refactorbot.testing.gateway_contract import GatewayContract
from refactorbot.testing.model_server import ModelServer
from refactorbot_gateway_litellm.gateway import LiteLLMGateway


class TestLiteLLMContract(GatewayContract):
    gateway_class = LiteLLMGateway
    plugin = "refactorbot_gateway_litellm.plugin"
    model, served_model = "openai/contract-model", "contract-model"
    fallback_model, served_fallback_model = "openai/contract-backup", "contract-backup"

    def gateway_config(
        self, server: ModelServer, *, fallbacks: Sequence[str] = (), timeout: float = 10.0
    ) -> dict[str, Any]:
        return {
            "api_base": server.base_url,
            "api_key_env": self.api_key_env,
            "fallbacks": list(fallbacks),
            "timeout": timeout,
            "num_retries": 0,
        }
