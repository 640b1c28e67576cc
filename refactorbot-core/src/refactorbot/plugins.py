"""Plugin discovery and registration: entry points in, isolated plugins and a registry out.

One entry-point scan per process. Every plugin is loaded, validated and registered inside its
own ``try``; a failure is recorded with the distribution, version, error and traceback, and the
host goes on (``RB_STRICT_PLUGINS=1`` raises instead).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import logging
import os
import re
import sys
import traceback
from collections.abc import Callable, Iterable, Mapping
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Literal

import pluggy

from refactorbot import hookspecs
from refactorbot._version import API_VERSION
from refactorbot.errors import PluginError

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "refactorbot"
PluginStatus = Literal["ok", "failed", "blocked", "incompatible"]


def normalize_name(name: str) -> str:
    """Return a distribution name in its PEP 503 normal form."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _env_list(env: Mapping[str, str], key: str) -> set[str] | None:
    value = env.get(key)
    if value is None:
        return None
    return {normalize_name(p) for p in value.split(",") if p.strip()}


@functools.cache
def scan_entry_points() -> tuple[EntryPoint, ...]:
    """Return the ``refactorbot`` entry points installed, scanned once per process."""
    return tuple(sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name))


@dataclasses.dataclass
class PluginRecord:
    """What the host knows of one plugin: where it came from and how loading went."""

    name: str
    version: str | None = None
    entry_point: str | None = None
    status: PluginStatus = "ok"
    hooks: list[str] = dataclasses.field(default_factory=list)
    error: str | None = None
    traceback: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict with stable keys."""
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Registered:
    """One registered object and the plugin that registered it."""

    obj: Any
    plugin: str


class Registry:
    """What plugins registered, by kind then name; collisions are errors naming both plugins."""

    KINDS = {
        "register_slices": "slices",
        "register_channels": "channels",
        "register_tools": "tools",
        "register_gateways": "gateways",
        "register_dashboard_pages": "pages",
    }

    def __init__(self) -> None:
        self.slices: dict[str, Registered] = {}
        self.channels: dict[str, Registered] = {}
        self.tools: dict[str, Registered] = {}
        self.gateways: dict[str, Registered] = {}
        self.pages: dict[str, Registered] = {}

    def of(self, kind: str) -> dict[str, Registered]:
        """Return the mapping for ``kind`` (``slices``, ``tools``, ...)."""
        table: dict[str, Registered] = getattr(self, kind)
        return table


def registered_name(kind: str, obj: Any) -> str:
    """Return the name ``obj`` registers under, or raise ``TypeError`` saying what is missing."""
    attr = {"slices": "slice_id", "pages": "key"}.get(kind, "name")
    name = getattr(obj, attr, None)
    if not isinstance(name, str) or not name:
        raise TypeError(f"{kind[:-1]} {obj!r} has no {attr!r} string attribute")
    return name


class PluginHost:
    """The pluggy manager plus what each plugin registered and how loading went."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self.env: Mapping[str, str] = os.environ if env is None else env
        self.pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)
        self.records: dict[str, PluginRecord] = {}
        self.registry = Registry()
        self.strict = self.env.get("RB_STRICT_PLUGINS", "") not in ("", "0", "false")

    # -- loading ---------------------------------------------------------------------------

    def load_entrypoints(self, entry_points: Iterable[EntryPoint] | None = None) -> None:
        """Load every installed plugin allowed by ``RB_LOAD_PLUGINS`` / ``RB_DISABLE_PLUGINS``."""
        allow = _env_list(self.env, "RB_LOAD_PLUGINS")
        deny = _env_list(self.env, "RB_DISABLE_PLUGINS") or set()
        eps = sorted(scan_entry_points() if entry_points is None else entry_points, key=lambda ep: ep.name)
        dists = [_dist_of(ep) for ep in eps]
        per_dist: dict[str, int] = {}
        for dist_name, _ in dists:
            per_dist[dist_name] = per_dist.get(dist_name, 0) + 1
        for ep, (dist_name, version) in zip(eps, dists, strict=True):
            name = dist_name if per_dist[dist_name] == 1 else f"{dist_name}:{ep.name}"
            record = PluginRecord(name=name, version=version, entry_point=f"{ep.name} = {ep.value}")
            self.records[name] = record
            norm = normalize_name(dist_name)
            if (allow is not None and norm not in allow) or norm in deny:
                record.status = "blocked"
                record.error = "disabled by RB_LOAD_PLUGINS / RB_DISABLE_PLUGINS"
                continue
            try:
                plugin = ep.load()
            except Exception as exc:  # any import-time error of a third-party module
                self._fail(record, f"import failed: {type(exc).__name__}: {exc}")
                continue
            self.add(plugin, record)

    def register(self, plugin: Any, name: str | None = None, version: str | None = None) -> PluginRecord:
        """Register a plugin object (a module or instance) directly, as tests and embedders do."""
        name = name or getattr(plugin, "__name__", None) or type(plugin).__name__
        return self.add(plugin, PluginRecord(name=name, version=version))

    def add(self, plugin: Any, record: PluginRecord) -> PluginRecord:
        """Check, register and run the registration hooks of one loaded plugin."""
        self.records[record.name] = record
        problem = _api_problem(plugin)
        if problem:
            record.status = "incompatible"
            record.error = problem
            if self.strict:
                raise PluginError(f"plugin {record.name}: {problem}")
            return record
        try:
            self.pm.register(plugin, name=record.name)
        except Exception as exc:  # pluggy validation, duplicate registration
            self._fail(record, f"hook validation failed: {exc}")
            return record
        try:
            unknown = [hc.name for hc in (self.pm.get_hookcallers(plugin) or []) if not hc.has_spec()]
            if unknown:
                raise PluginError(f"implements unknown hook(s): {', '.join(sorted(unknown))}")
            record.hooks = sorted(hc.name for hc in self.pm.get_hookcallers(plugin) or [])
            staged = self._run_registration(plugin)
        except Exception as exc:  # a third-party registration hook raised
            self.pm.unregister(plugin)
            record.hooks = []
            self._fail(record, f"{type(exc).__name__}: {exc}")
            return record
        self._merge(staged, record)
        return record

    def _run_registration(self, plugin: Any) -> list[tuple[str, str, Any]]:
        staged: list[tuple[str, str, Any]] = []
        for hook_name, kind in Registry.KINDS.items():
            for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                if impl.plugin is not plugin:
                    continue

                def register(obj: Any, _kind: str = kind) -> None:
                    staged.append((_kind, registered_name(_kind, obj), obj))

                _call_impl(impl, register=register)
        return staged

    def _merge(self, staged: list[tuple[str, str, Any]], record: PluginRecord) -> None:
        for kind, name, obj in staged:
            table = self.registry.of(kind)
            if name in table and table[name].plugin != record.name:
                other = table[name].plugin
                msg = f"{kind[:-1]} {name!r} registered by both {other} and {record.name}; kept {other}'s"
                record.error = f"{record.error}; {msg}" if record.error else msg
                log.error(msg)
                if self.strict:
                    raise PluginError(msg)
                continue
            table[name] = Registered(obj, record.name)

    def _fail(self, record: PluginRecord, message: str) -> None:
        record.status = "failed"
        record.error = message.splitlines()[0] if message else message
        record.traceback = traceback.format_exc() if sys.exc_info()[0] is not None else None
        log.error("plugin %s failed: %s", record.name, record.error)
        if self.strict:
            raise PluginError(f"plugin {record.name}: {record.error}")

    # -- calling hooks ---------------------------------------------------------------------

    def call_isolated(self, hook_name: str, **kwargs: Any) -> list[Any]:
        """Call every implementation of ``hook_name`` on its own; failures are recorded."""
        results = []
        for impl in reversed(getattr(self.pm.hook, hook_name).get_hookimpls()):
            try:
                results.append(_call_impl(impl, **kwargs))
            except Exception as exc:  # a third-party hook raised: record it, go on
                record = self.records.get(impl.plugin_name)
                message = f"{hook_name}: {type(exc).__name__}: {exc}"
                if record is not None:
                    self._fail(record, message)
                else:
                    log.exception("hook %s of %s failed", hook_name, impl.plugin_name)
        return results

    def has_impls(self, hook_name: str) -> bool:
        """Return whether any plugin implements ``hook_name``."""
        return bool(getattr(self.pm.hook, hook_name).get_hookimpls())

    async def acall(self, hook_name: str, **kwargs: Any) -> list[Any]:
        """Call a runtime hook and await every awaitable result."""
        results = getattr(self.pm.hook, hook_name)(**kwargs)
        return [await r if inspect.isawaitable(r) else r for r in results]

    async def afirstresult(self, hook_name: str, **kwargs: Any) -> Any:
        """Call a ``firstresult`` hook, awaiting implementations until one returns non-None."""
        for impl in reversed(getattr(self.pm.hook, hook_name).get_hookimpls()):
            result = _call_impl(impl, **kwargs)
            if inspect.isawaitable(result):
                result = await result
            if result is not None:
                return result
        return None

    def sorted_records(self) -> list[PluginRecord]:
        """Return plugin records sorted by name."""
        return [self.records[k] for k in sorted(self.records)]

    @property
    def failed(self) -> list[PluginRecord]:
        """Return the records of plugins that did not load cleanly."""
        return [r for r in self.sorted_records() if r.status in ("failed", "incompatible")]


def _dist_of(ep: EntryPoint) -> tuple[str, str | None]:
    """Return the distribution name and version of ``ep`` (its metadata is parsed once)."""
    if ep.dist is None:
        return ep.name, None
    meta = ep.dist.metadata
    return meta["Name"], meta["Version"]


def _call_impl(impl: pluggy.HookImpl, **kwargs: Any) -> Any:
    func: Callable[..., Any] = impl.function
    return func(**{k: kwargs[k] for k in impl.argnames if k in kwargs})


def _api_problem(plugin: Any) -> str | None:
    declared = getattr(plugin, "REFACTORBOT_API", None)
    if declared is None:
        return f"declares no REFACTORBOT_API (this host offers API {API_VERSION})"
    versions = {declared} if isinstance(declared, int) else set(declared)
    if API_VERSION not in versions:
        return f"supports API {sorted(versions)}, this host offers API {API_VERSION}"
    return None
