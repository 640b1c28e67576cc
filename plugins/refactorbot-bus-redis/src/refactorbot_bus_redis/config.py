"""``[plugins.redis]``: where Redis is, the key namespace, and how the bus delivers.

The connection settings (``url``, ``password``, ``namespace``, ``node``, the timeouts) describe
a deployment's Redis, not only its event bus: anything else of the deployment that talks to the
same Redis reads them from this section and names its keys with ``Keys``.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from pydantic import ConfigDict, Field, SecretStr, field_validator
from refactorbot import Model

_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_SCHEMES = ("redis", "rediss", "unix")


class SubscriberPolicy(Model):
    """Overrides for one subscriber (``[plugins.redis.subscribers."<name>"]``)."""

    model_config = ConfigDict(extra="forbid")

    max_attempts: int | None = Field(None, ge=1, le=100)


class RedisConfig(Model):
    """``[plugins.redis]`` in ``refactorbot.toml`` (or ``RB_REDIS_<FIELD>``)."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(
        None,
        description="redis://[user@]host:port/db, rediss:// (TLS) or unix:///path; unset: the Redis bus is off",
    )
    password: SecretStr | None = Field(
        None, description="Redis password (better here or in RB_REDIS_PASSWORD than in the URL)"
    )
    namespace: str = Field(
        "refactorbot", description="prefix of every key; deployments sharing one Redis use different namespaces"
    )
    node: str | None = Field(None, description="this host's name in consumer names (default: the machine's hostname)")
    connect_timeout: float = Field(5.0, gt=0, le=300, description="seconds to open a connection")
    command_timeout: float = Field(10.0, gt=0, le=300, description="seconds a command may take on an open connection")
    publish_timeout: float = Field(
        10.0, ge=0, le=3600, description="seconds a publish keeps retrying while Redis is unreachable; then refused"
    )
    max_len: int = Field(
        100_000, ge=1, le=1_000_000_000, description="entries kept once every group acknowledged them (replay window)"
    )
    max_unacked: int = Field(
        1_000_000,
        ge=1,
        le=1_000_000_000,
        description="entries a group may leave unacknowledged; past it, publish is refused (nothing unread is trimmed)",
    )
    trim_interval: float = Field(1.0, gt=0, le=3600, description="seconds between two trim passes")
    claim_idle: float = Field(
        30.0, gt=0, le=86_400, description="seconds an entry held by a silent consumer waits before another claims it"
    )
    lock_ttl: float = Field(
        10.0,
        ge=0.3,
        le=3600,
        description="seconds a singleton's lock outlives its holder's last renewal (renewed every lock_ttl / 3)",
    )
    batch: int = Field(100, ge=1, le=10_000, description="entries read at once by a subscriber")
    max_attempts: int = Field(5, ge=1, le=100, description="deliveries of one entry before it is dead-lettered")
    retry_backoff: float = Field(0.5, gt=0, le=3600, description="seconds before the first retry; doubles each time")
    retry_backoff_max: float = Field(60.0, gt=0, le=86_400, description="longest wait between two retries")
    handler_timeout: float = Field(30.0, gt=0, le=3600, description="seconds a handler may take; past it, it failed")
    stop_timeout: float = Field(
        5.0, ge=0, le=600, description="seconds a stop lets running handlers finish; then they are cancelled"
    )
    max_payload_bytes: int = Field(1_048_576, ge=1, le=512 * 1_048_576, description="largest JSON payload accepted")
    dead_letter_max_len: int = Field(100_000, ge=1, description="dead letters kept (the oldest are trimmed)")
    subscribers: dict[str, SubscriberPolicy] = Field(
        default_factory=dict, description="per-subscriber overrides of max_attempts"
    )

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip()
        parts = urlsplit(value)
        if parts.scheme not in _SCHEMES:
            raise ValueError(f"must start with redis://, rediss:// or unix://, not {parts.scheme or 'nothing'}://")
        if parts.scheme != "unix" and not parts.hostname:
            raise ValueError("names no host (redis://HOST:PORT/DB)")
        try:
            parts.port  # noqa: B018 - raises on a port that is not a number
        except ValueError:
            raise ValueError("has a port that is not a number") from None
        return value

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("1-64 letters, digits, '_', '.' or '-'")
        return value

    @field_validator("node")
    @classmethod
    def _node(cls, value: str | None) -> str | None:
        if value is not None and not _NAME.match(value):
            raise ValueError("1-64 letters, digits, '_', '.' or '-'")
        return value

    def where(self) -> str:
        """Return the URL with any user and password left out (for logs and errors)."""
        return redact_url(self.url or "")

    def node_name(self) -> str:
        """Return ``node``, or the hostname made safe for a consumer name."""
        if self.node:
            return self.node
        return re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname())[:64] or "node"

    def consumer_name(self) -> str:
        """Return a consumer name unique to this process: ``<node>:<pid>:<random>``."""
        return f"{self.node_name()}:{os.getpid()}:{secrets.token_hex(3)}"


def redact_url(url: str) -> str:
    """Return ``url`` without its user and password: ``redis://host:6379/0``."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return f"unix://{parts.path}"
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


@dataclass(frozen=True)
class Keys:
    """The Redis keys of one namespace, all under one hash tag (one Redis Cluster slot).

    ``rb:{<namespace>}:<what>``: the event stream ``events``, its offset counter ``events:seq``,
    its trim floor ``events:floor`` and the dead letters ``events:dead``. Other parts of a
    deployment derive theirs with ``key`` (``key("req", slice_id)``), so one namespace holds all.
    """

    namespace: str

    def key(self, *parts: str) -> str:
        """Return ``rb:{<namespace>}:<part>:<part>...``."""
        return ":".join((f"rb:{{{self.namespace}}}", *parts))

    @property
    def events(self) -> str:
        return self.key("events")

    @property
    def seq(self) -> str:
        return self.key("events", "seq")

    @property
    def floor(self) -> str:
        return self.key("events", "floor")

    @property
    def dead(self) -> str:
        return self.key("events", "dead")


def client_of(config: RedisConfig, **options: Any) -> Any:
    """Return a ``redis.asyncio.Redis`` for ``config`` (not connected yet; connections open on use).

    redis-py's own retries are off: a caller decides what may be retried (a publish is retried
    with a check that it was not stored already; a blocking read is simply read again).
    """
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    if config.url is None:
        raise ValueError("[plugins.redis] url is not set")
    settings: dict[str, Any] = {
        "socket_connect_timeout": config.connect_timeout,
        "socket_timeout": config.command_timeout,
        "retry": Retry(NoBackoff(), 0),
        "health_check_interval": 30,
        "client_name": f"refactorbot:{config.node_name()}",
    }
    if config.password is not None:
        settings["password"] = config.password.get_secret_value()
    settings.update(options)
    return aioredis.Redis.from_url(config.url, **settings)
