"""``refactorbot worker``: serve some slices from their Redis request streams on this machine."""

from __future__ import annotations

import os
import re
from typing import Any

import click
from refactorbot.cli import Env, fail, run

_SLICE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def parse_slices(text: str) -> list[str]:
    """Return the slice ids of ``memory,tools``; raise ``click.BadParameter`` with one line."""
    ids = [part.strip() for part in text.split(",") if part.strip()]
    if not ids:
        raise click.BadParameter("name at least one slice: --slices memory,tools")
    for slice_id in ids:
        if not _SLICE.match(slice_id):
            raise click.BadParameter(f"{slice_id!r} is not a slice id (letters, digits, '_' and '-')")
    return list(dict.fromkeys(ids))


def location_variable(slice_id: str) -> str:
    """Return the variable overriding ``[slices.<slice_id>] location`` (``RB_<ID>_LOCATION``)."""
    return f"RB_{slice_id.upper().replace('-', '_').replace('.', '_')}_LOCATION"


@click.command()
@click.option("--slices", "slices_text", required=True, help="Slices this worker serves, comma-separated.")
@click.option(
    "--redis",
    "redis_url",
    default=None,
    help="Redis URL (default: [plugins.redis] url or RB_REDIS_URL); the password goes in RB_REDIS_PASSWORD.",
)
@click.option(
    "--concurrency",
    default=64,
    show_default=True,
    type=click.IntRange(1, 10_000),
    help="Requests run at once, all slices together; each slice also within its own max_concurrency.",
)
@click.pass_obj
def worker(env: Env, slices_text: str, redis_url: str | None, concurrency: int) -> None:
    """Serve the named slices to the whole deployment from their Redis request streams."""
    import logging

    from refactorbot import ConfigError, load_settings

    from refactorbot_bus_redis.config import RedisConfig
    from refactorbot_bus_redis.transport import SliceWorker

    try:
        slice_ids = parse_slices(slices_text)
    except click.BadParameter as exc:
        fail(env, f"--slices: {exc.message}")
    settings = load_settings(env.home, env.config)
    config = settings.section("plugins", "redis", RedisConfig, os.environ)
    if redis_url:
        try:
            config = RedisConfig.model_validate({**config.model_dump(), "url": redis_url})
        except ValueError as exc:
            fail(env, f"--redis: {str(exc).splitlines()[-1].strip()}")
    if config.url is None:
        fail(env, "no Redis to serve from: pass --redis redis://HOST:6379/0 or set [plugins.redis] url")
    # a server's console shows what it does: the root logger's plain console handlers go to INFO
    for handler in [h for h in logging.getLogger().handlers if type(h) is logging.StreamHandler]:
        handler.setLevel(min(handler.level, logging.INFO))

    # The slices served here run here, whatever location the shared configuration gives them.
    slices = {**settings.slices}
    for slice_id in slice_ids:
        slices[slice_id] = {**slices.get(slice_id, {}), "location": "local"}
    local = settings.model_copy(update={"slices": slices})
    environ = {k: v for k, v in os.environ.items() if k not in {location_variable(sid) for sid in slice_ids}}
    # Each slice runs here at most its own [slices.<id>.resources] max_concurrency at once: the worker
    # reads no more of its requests than that, so what it cannot run yet stays for other workers.
    try:
        limits = {sid: local.slice_resources(sid, environ).max_concurrency for sid in slice_ids}
    except ConfigError as exc:
        fail(env, str(exc).splitlines()[0])

    async def serving() -> None:
        from refactorbot import MasterCore

        host: Any = MasterCore(local, env.plugins(), serving=True, only=slice_ids, env=environ)
        served = SliceWorker(
            config, slice_ids, host.route, stopping=lambda: host.stopping, concurrency=concurrency, limits=limits
        )
        await host.start()
        missing = [sid for sid in slice_ids if sid not in host.running_slices()]
        if missing:
            await host.stop()
            known = ", ".join(host.slice_ids()) or "none"
            fail(env, f"slice(s) not running here: {', '.join(missing)} (installed and enabled: {known})")
        await served.start()

        def ready() -> None:
            click.echo(
                f"refactorbot worker serving {', '.join(slice_ids)} from Redis at {config.where()},"
                f" namespace {config.namespace}, consumer {served.consumer}"
            )

        try:
            await host.serve_forever(ready)
        finally:
            await served.stop()

    run(env, serving, serving=True)
    click.echo("refactorbot worker stopped.")
