"""The providers slice's test setup: the host configuration (the kit's loopback gateway, two priced models)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from refactorbot.testing import ModelServer, loopback_config
from refactorbot.testing.gateway_contract import write_config

PLUGIN = "refactorbot_slice_providers.plugin"
#: The kit's LoopbackGateway, a plugin module of its own.
LOOPBACK = "refactorbot.testing.loopback"
KEY_ENV = "RB_PROVIDERS_TEST_KEY"
KEY = "sk-providers-test-secret-value"


def providers_config(server: ModelServer, **extra: Any) -> dict[str, Any]:
    """Return a host configuration: the loopback gateway (sending ``$KEY_ENV``) and two priced models."""
    section: dict[str, Any] = {
        "providers": [{"name": "loop", "gateway": "loopback", "api_key_env": KEY_ENV, "base_url": server.base_url}],
        "models": [
            {
                "name": "loop/cheap",
                "provider": "loop",
                "context_window": 16000,
                "input_price_per_mtok": 1.0,
                "output_price_per_mtok": 2.0,
                "capabilities": ["tools"],
            },
            {
                "name": "loop/strong",
                "provider": "loop",
                "context_window": 200000,
                "input_price_per_mtok": 10.0,
                "output_price_per_mtok": 30.0,
                "capabilities": ["tools", "vision"],
            },
        ],
        "routing": {"simple": "loop/cheap", "planning": "loop/strong"},
        **extra,
    }
    return {
        "core": {"health_interval": 3600},
        **loopback_config(server, model="loop/cheap", api_key_env=KEY_ENV),
        "slices": {"providers": section},
    }


def home_with(tmp_path: Path, config: dict[str, Any]) -> Path:
    """Write ``config`` into a fresh home and return it."""
    home = tmp_path / "home"
    write_config(home, config)
    return home
