"""Entry point of refactorbot-bus-redis: with ``[plugins.redis] url`` set, the event bus on Redis Streams,
slices served by workers (``location = "redis"``) and singleton leases on a Redis lock."""

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
def provide_singleton_lease(name: str, on_acquired: Any, on_lost: Any, config: Any, env: Any) -> Any:
    """Return a Redis lock shared by every host (``Singleton``) when ``[plugins.redis] url`` is set, else ``None``."""
    if config is None:
        return None
    from refactorbot_bus_redis.config import RedisConfig

    settings = config.section("plugins", "redis", RedisConfig, env)
    if settings.url is None:
        return None
    from refactorbot_bus_redis.lock import Singleton

    return Singleton(settings, name, on_acquired, on_lost, ttl=settings.lock_ttl)


@hookimpl
def register_commands(cli: Any) -> None:
    """Add ``refactorbot worker``: serve slices from their Redis request streams."""
    from refactorbot_bus_redis.cli import worker

    cli.add_command(worker)
