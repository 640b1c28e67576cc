"""Configuration of the OpenRouter gateway: the ``[gateways.openrouter]`` table."""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field
from refactorbot import EnvVarName, HttpUrl, Model

PREFIX = "openrouter/"


def wire_name(model: str) -> str:
    """Return the model id OpenRouter expects: ``openrouter/anthropic/x`` becomes ``anthropic/x``."""
    return model[len(PREFIX) :] if model.startswith(PREFIX) else model


class OpenRouterConfig(Model):
    """``[gateways.openrouter]``: endpoint, key variable, timeouts, retries and fallback models."""

    model_config = ConfigDict(extra="forbid")

    base_url: HttpUrl = Field("https://openrouter.ai/api/v1", description="OpenAI-compatible base URL")
    api_key_env: EnvVarName = Field(
        "OPENROUTER_API_KEY", description="NAME of the environment variable holding the key"
    )
    timeout: float = Field(60.0, gt=0, description="seconds before a request times out")
    max_retries: int = Field(2, ge=0, le=10, description="retries of one model on 429/5xx or connection errors")
    backoff: float = Field(0.5, ge=0, description="first retry delay in seconds, doubled each retry")
    backoff_max: float = Field(8.0, ge=0, description="longest delay, also the cap on Retry-After")
    models: list[str] = Field(default_factory=list, description="fallback models, sent as OpenRouter's `models`")
    provider: dict[str, Any] | None = Field(None, description="OpenRouter provider routing preferences")
    app_url: str | None = Field(None, description="sent as HTTP-Referer (OpenRouter app attribution)")
    app_title: str | None = Field(None, description="sent as X-Title")
