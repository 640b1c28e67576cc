"""pytest plugin: fixtures for testing refactorbot plugins (loaded through ``pytest11``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

try:
    import pytest_asyncio
except ImportError:  # the kit's async fixtures need refactorbot-core[testing]
    pytest_asyncio = None  # type: ignore[assignment]


@pytest.fixture
def rb_home(tmp_path: Path) -> Path:
    """Return a fresh home directory for one test."""
    home = tmp_path / "rb-home"
    home.mkdir()
    return home


@pytest.fixture
def rb_plugins() -> list[Any]:
    """Return the plugins ``rb_host`` registers; override it in your ``conftest.py``."""
    return []


@pytest.fixture
def rb_config() -> dict[str, Any]:
    """Return the configuration ``rb_host`` writes to ``refactorbot.toml``; override as needed."""
    return {"core": {"health_interval": 3600}}


if pytest_asyncio is not None:

    @pytest_asyncio.fixture
    async def rb_host(rb_home: Path, rb_plugins: list[Any], rb_config: dict[str, Any]) -> AsyncIterator[Any]:
        """Yield a started ``MasterCore`` with ``rb_plugins`` only, on ``rb_home``; stop it after."""
        from refactorbot.testing.host import host_running

        async with host_running(rb_home, rb_plugins, config=rb_config) as host:
            yield host

    @pytest_asyncio.fixture
    async def make_host(rb_home: Path) -> AsyncIterator[Callable[..., Awaitable[Any]]]:
        """Yield ``await make_host(*plugins, config=..., env=...)``; every host is stopped after."""
        from refactorbot.testing.host import build_host

        started: list[Any] = []
        counter = iter(range(1_000_000))

        async def factory(*plugins: Any, home: Path | None = None, **kwargs: Any) -> Any:
            kwargs.setdefault("config", {"core": {"health_interval": 3600}})
            host = build_host(home or rb_home / f"host{next(counter)}", plugins, **kwargs)
            await host.start()
            started.append(host)
            return host

        yield factory
        for host in reversed(started):
            await host.stop()
