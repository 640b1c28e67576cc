"""Entry point of refactorbot-bus-redis: the event bus on Redis Streams when ``[plugins.redis] url`` is set."""

from __future__ import annotations

from typing import Any

from refactorbot import hookimpl

#: The plugin API versions this plugin supports.
REFACTORBOT_API = 1


@hookimpl(tryfirst=True)
def provide_event_bus(config: Any, env: Any) -> Any:
    """Return the Redis bus when ``[plugins.redis] url`` (or ``RB_REDIS_URL``) is set, else ``None``.

    Called before the other buses' hooks (``tryfirst``): with a URL it wins over the durable
    SQLite bus of ``refactorbot-slice-eventbus``; without one, that bus (or the in-memory one)
    is used as if this plugin were not installed.
    """
    from refactorbot_bus_redis.config import RedisConfig

    settings = config.section("plugins", "redis", RedisConfig, env)
    if settings.url is None:
        return None
    from refactorbot_bus_redis.bus import RedisEventBus

    return RedisEventBus(settings)


@hookimpl
def provide_slice_transport(slice_id: str, location: str, config: Any, env: Any) -> Any:
    """Return a ``RequestClient`` sending ``slice_id``'s requests to its workers for ``location = "redis"``."""
    if location != "redis":
        return None
    from refactorbot import ConfigError

    from refactorbot_bus_redis.config import RedisConfig
    from refactorbot_bus_redis.transport import RequestClient

    settings = config.section("plugins", "redis", RedisConfig, env)
    if settings.url is None:
        raise ConfigError(f'[slices.{slice_id}] location = "redis" needs [plugins.redis] url (or RB_REDIS_URL)')
    return RequestClient(settings)


@hookimpl
def register_commands(cli: Any) -> None:
    """Add ``refactorbot worker``: serve slices from their Redis request streams."""
    from refactorbot_bus_redis.cli import worker

    cli.add_command(worker)
