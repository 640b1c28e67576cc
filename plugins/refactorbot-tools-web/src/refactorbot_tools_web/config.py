"""``[tools.web]``: caps, the private-address policy and the search backend."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, field_validator
from refactorbot import EnvVarName, Model


class WebConfig(Model):
    """Configuration shared by ``web_fetch`` and ``web_search``."""

    model_config = ConfigDict(extra="forbid")

    allow_private: bool = Field(False, description="allow loopback, private and link-local targets (tests, intranets)")
    timeout: float = Field(15.0, gt=0, description="seconds for a whole fetch, redirects included")
    max_bytes: int = Field(2_000_000, ge=1_024, description="bytes downloaded at most per fetch")
    max_chars: int = Field(40_000, ge=256, description="characters of text returned to the model")
    max_redirects: int = Field(5, ge=0, le=20, description="redirects followed (each one re-checked)")
    user_agent: str = Field("refactorbot-web/0.1", max_length=200)
    search_url: str | None = Field(
        None,
        description="search endpoint with {query} (and optional {count}), e.g. 'http://127.0.0.1:8888/search?q={query}&format=json'",
    )
    search_backend: Literal["searxng", "brave"] = Field("searxng", description="response format of search_url")
    api_key_env: EnvVarName | None = Field(None, description="environment variable holding the search API key (brave)")
    max_results: int = Field(5, ge=1, le=50, description="search results returned by default")

    @field_validator("search_url")
    @classmethod
    def _template(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if not value.startswith(("http://", "https://")):
            raise ValueError("search_url must be an http:// or https:// URL")
        if "{query}" not in value:
            raise ValueError("search_url must contain {query}")
        return value
