"""The ``[plugins.api]`` section of ``refactorbot.toml``."""

from __future__ import annotations

from pydantic import ConfigDict, Field
from refactorbot import EnvVarName, Model


class ApiConfig(Model):
    """Where the control API listens and how much it reads (``RB_API_HOST``, ``RB_API_PORT``, ...)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="serve the API with `refactorbot serve`")
    host: str = Field("127.0.0.1", min_length=1, description="address to bind (loopback by default)")
    port: int = Field(8787, ge=0, le=65535, description="TCP port; 0 picks a free one")
    max_body_bytes: int = Field(
        1_048_576,
        ge=1024,
        description="largest request body in bytes; a larger one is answered 413 before it is read",
    )
    scrape_token_env: EnvVarName | None = Field(
        None,
        description=(
            "name of the environment variable holding a token that may read GET /metrics/prometheus"
            " and nothing else (the bearer token works too)"
        ),
    )
