from __future__ import annotations

from refactorbot.testing import SliceContract
from refactorbot_slice_providers.slice import ProvidersSlice


class TestProvidersContract(SliceContract):
    slice_class = ProvidersSlice
    plugin = "refactorbot_slice_providers.plugin"
    # Keyed tables (not lists of tables) so the kit's TOML writer can express them.
    config = {
        "slices": {
            "providers": {
                "providers": {"openai": {"gateway": "litellm", "api_key_env": "OPENAI_API_KEY"}},
                "models": {
                    "cheap-model": {"provider": "openai", "input_price_per_mtok": 0.15, "output_price_per_mtok": 0.6},
                    "strong-model": {"provider": "openai", "input_price_per_mtok": 2.5, "output_price_per_mtok": 10},
                },
                "routing": {"simple": "cheap-model", "planning": "strong-model"},
            }
        }
    }
    valid_payloads = {
        "list_models": {"capability": "tools"},
        "record_call": {"model": "cheap-model", "slice_id": "agent", "prompt_tokens": 1000, "completion_tokens": 10},
        "spend": {"since": "2026-01-01", "group_by": ["slice", "model"]},
        "set_budget": {"slice_id": "agent", "daily_usd": 5.0, "monthly_usd": 50.0},
        "get_budgets": {},
        "route": {"task": "planning"},
    }
    invalid_payloads = {
        "list_models": [{"provider": "bad name"}, {"colour": "red"}],
        "record_call": [
            {"model": "cheap-model", "prompt_tokens": -1},
            {"model": "has space"},
            {"model": "cheap-model", "cost_usd": -0.01},
            {"model": "cheap-model", "slice_id": "../etc"},
        ],
        "spend": [
            {"since": "2026-02-01", "until": "2026-01-01"},
            {"group_by": ["week"]},
            {"group_by": ["day", "day"]},
            {"since": "yesterday"},
        ],
        "set_budget": [{"daily_usd": -1}, {"monthly_usd": "lots"}, {"slice_id": "Agent!"}],
        "route": [{"task": ""}, {"task": "t" * 65}],
    }
