"""Which bus a host gets, the settings' validation, and the entry point's import cost."""

from __future__ import annotations

import pytest
from conftest import until
from refactorbot import ConfigError, Event
from refactorbot.testing import build_host, check_import_cost
from refactorbot_bus_redis.bus import RedisEventBus
from refactorbot_bus_redis.config import RedisConfig, redact_url

EVENTBUS = "refactorbot_slice_eventbus.plugin"
REDIS = "refactorbot_bus_redis.plugin"


def test_plugin_module_imports_fast_and_light() -> None:
    result = check_import_cost(REDIS)
    assert not result["heavy"], result
    assert result["ms"] < 50, result
    import subprocess
    import sys

    loaded = subprocess.run(
        [sys.executable, "-c", f"import sys, {REDIS}; print('redis' in sys.modules)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert loaded.stdout.strip() == "False"


@pytest.mark.asyncio
@pytest.mark.parametrize("order", [[EVENTBUS, REDIS], [REDIS, EVENTBUS]])
async def test_with_a_url_the_redis_bus_wins_over_the_durable_one(redis_server, namespace, tmp_path, order) -> None:
    env = {"RB_REDIS_URL": redis_server.url, "RB_REDIS_NAMESPACE": namespace}
    host = build_host(tmp_path / "home", order, config={"core": {"health_interval": 3600}}, env=env)
    await host.start()
    try:
        assert type(host.bus) is RedisEventBus
        assert host.bus.config.namespace == namespace
        await host.publish(Event(topic="a.b", payload={}))
        await until(lambda: host.bus.published == 1)
    finally:
        await host.stop()
    # The durable bus was never built: its lock was not taken (its slice still runs, on its own log).
    assert not (tmp_path / "home" / "slices" / "eventbus.lock").exists()


@pytest.mark.asyncio
async def test_without_a_url_the_durable_bus_is_used(tmp_path) -> None:
    from refactorbot_slice_eventbus.bus import DurableEventBus

    host = build_host(tmp_path / "home", [REDIS, EVENTBUS], config={"core": {"health_interval": 3600}}, env={})
    await host.start()
    try:
        assert type(host.bus) is DurableEventBus
    finally:
        await host.stop()


@pytest.mark.asyncio
async def test_without_a_url_or_another_bus_the_in_memory_bus_stays(tmp_path) -> None:
    from refactorbot.events import InMemoryEventBus

    host = build_host(tmp_path / "home", [REDIS], config={"core": {"health_interval": 3600}}, env={"RB_REDIS_URL": ""})
    await host.start()
    try:
        assert type(host.bus) is InMemoryEventBus
    finally:
        await host.stop()


@pytest.mark.asyncio
async def test_the_url_may_come_from_the_toml_section(redis_server, namespace, tmp_path) -> None:
    config = {
        "core": {"health_interval": 3600},
        "plugins": {"redis": {"url": redis_server.url, "namespace": namespace}},
    }
    host = build_host(tmp_path / "home", [REDIS], config=config, env={})
    await host.start()
    try:
        assert type(host.bus) is RedisEventBus
    finally:
        await host.stop()


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"RB_REDIS_URL": "http://h:1"},
            "[plugins.redis]: url: Value error, must start with redis://, rediss:// or unix://, not http://",
        ),
        ({"RB_REDIS_URL": "redis://:6379"}, "[plugins.redis]: url: Value error, names no host (redis://HOST:PORT/DB)"),
        ({"RB_REDIS_URL": "redis://h:port"}, "[plugins.redis]: url: Value error, has a port that is not a number"),
        (
            {"RB_REDIS_URL": "redis://h", "RB_REDIS_NAMESPACE": "a b"},
            "[plugins.redis]: namespace: Value error, 1-64 letters, digits, '_', '.' or '-'",
        ),
        (
            {"RB_REDIS_URL": "redis://h", "RB_REDIS_MAX_ATTEMPTS": "0"},
            "[plugins.redis]: max_attempts: Input should be greater than or equal to 1",
        ),
    ],
)
async def test_bad_settings_stop_the_start_with_one_line(tmp_path, env, message) -> None:
    host = build_host(tmp_path / "home", [REDIS], config={"core": {"health_interval": 3600}}, env=env)
    with pytest.raises(ConfigError) as failed:
        await host.start()
    assert str(failed.value) == message
    await host.stop()


def test_urls_are_shown_without_credentials() -> None:
    assert redact_url("redis://user:pw@host:6380/2") == "redis://host:6380/2"
    assert redact_url("rediss://:pw@[::1]:6379/0") == "rediss://[::1]:6379/0"
    assert redact_url("unix:///run/redis.sock") == "unix:///run/redis.sock"
    config = RedisConfig(url="redis://u:secret@h:1/0", password="other")
    assert config.where() == "redis://h:1/0"
    assert "other" not in repr(config) and "secret" not in config.where()


def test_consumer_names_are_unique_per_process_and_node() -> None:
    config = RedisConfig(url="redis://h", node="worker-1")
    one, two = config.consumer_name(), config.consumer_name()
    assert one != two and one.startswith("worker-1:") and two.startswith("worker-1:")
