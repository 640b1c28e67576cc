"""Build an isolated host: chosen plugins, a temporary home, no installed plugins unless asked."""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import AsyncIterator, Iterable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from refactorbot.config import load_settings
from refactorbot.home import create_private_file, private_dir
from refactorbot.master import MasterCore
from refactorbot.plugins import PluginHost
from refactorbot.testing.builders import BuiltPlugin


def _as_plugin(plugin: Any) -> Any:
    return importlib.import_module(plugin) if isinstance(plugin, str) else plugin


def build_host(
    home: Path,
    plugins: Iterable[Any] = (),
    *,
    config: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    load_installed: bool = False,
    serving: bool = True,
) -> MasterCore:
    """Return a ``MasterCore`` on ``home`` with ``plugins`` (modules, objects or module names).

    ``config`` is written to ``home/refactorbot.toml`` first (as a dict of TOML tables);
    ``env`` replaces ``os.environ`` for ``RB_*`` lookups so tests never see the developer's;
    ``serving=False`` builds a host like a one-shot CLI command's (no long-running services).
    """
    if not home.is_dir():  # created 0700; an existing home is left for the host to check
        private_dir(home)
    if config:  # private like everything refactorbot writes in a home (no "home was open" warning)
        path = home / "refactorbot.toml"
        create_private_file(path)
        path.write_text(_to_toml(config), encoding="utf-8")
    env = dict(env or {})
    host = PluginHost(env)
    if load_installed:
        host.load_entrypoints()
    for plugin in plugins:
        obj = _as_plugin(plugin)
        name = obj.__name__ if isinstance(obj, ModuleType | BuiltPlugin) else type(obj).__name__
        host.register(obj, name=name)
    settings = load_settings(home, env=env)
    return MasterCore(settings, host, env, serving=serving)


@contextlib.asynccontextmanager
async def host_running(home: Path, plugins: Iterable[Any] = (), **kwargs: Any) -> AsyncIterator[MasterCore]:
    """Start a host built by ``build_host`` for the body, then stop it."""
    host = build_host(home, plugins, **kwargs)
    await host.start()
    try:
        yield host
    finally:
        await host.stop()


def _to_toml(data: Mapping[str, Any], prefix: str = "") -> str:
    scalars = {k: v for k, v in data.items() if not isinstance(v, Mapping)}
    tables = {k: v for k, v in data.items() if isinstance(v, Mapping)}
    lines = [f"[{prefix}]"] if prefix and scalars else []
    lines += [f"{k} = {_toml_value(v)}" for k, v in scalars.items()]
    out = "\n".join(lines) + ("\n" if lines else "")
    for key, value in tables.items():
        out += _to_toml(value, f"{prefix}.{key}" if prefix else key)
    return out


def _toml_value(value: Any) -> str:
    import json

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):  # inside a list: an inline table, so arrays of tables work too
        return "{" + ", ".join(f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in value.items()) + "}"
    return json.dumps(str(value))
