"""Configuration of the LiteLLM gateway: the ``[gateways.litellm]`` table."""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field
from refactorbot import EnvVarName, HttpUrl, Model


class ModelOverride(Model):
    """Settings for one model, overriding the gateway-wide ones."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(
        default=None, description="LiteLLM model name to send instead (e.g. 'openai/gpt-4o-mini')"
    )
    api_base: HttpUrl | None = None
    api_key_env: EnvVarName | None = None
    timeout: float | None = Field(default=None, gt=0)
    num_retries: int | None = Field(default=None, ge=0, le=10)
    fallbacks: list[str] | None = None
    params: dict[str, Any] = Field(default_factory=dict, description="extra parameters (temperature, ...)")


class LiteLLMConfig(Model):
    """``[gateways.litellm]``: where to send calls, how long to wait, what to fall back to."""

    model_config = ConfigDict(extra="forbid")

    api_base: HttpUrl | None = Field(None, description="base URL of an OpenAI-compatible endpoint or proxy")
    api_key_env: EnvVarName | None = Field(None, description="NAME of the environment variable holding the API key")
    timeout: float = Field(60.0, gt=0, description="seconds before a call times out")
    num_retries: int = Field(0, ge=0, le=10, description="retries of the same model on 429/5xx")
    fallbacks: list[str] = Field(default_factory=list, description="models tried in order when a call fails")
    models: dict[str, ModelOverride] = Field(default_factory=dict, description="per-model overrides")

    def for_model(self, model: str) -> ModelOverride:
        """Return the effective settings of ``model``: its override merged over the gateway's."""
        override = self.models.get(model, ModelOverride())
        return ModelOverride(
            model=override.model or model,
            api_base=override.api_base or self.api_base,
            api_key_env=override.api_key_env or self.api_key_env,
            timeout=override.timeout or self.timeout,
            num_retries=self.num_retries if override.num_retries is None else override.num_retries,
            fallbacks=self.fallbacks if override.fallbacks is None else override.fallbacks,
            params=override.params,
        )
