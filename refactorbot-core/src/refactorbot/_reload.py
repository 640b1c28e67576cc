"""Hot reload: restart one plugin's slices with the code installed now. Internal (see ``master``).

``reload_slice`` drains and stops the slices of the plugin that registered the slice (a module
is shared by every slice it registers, so they go together), forgets the plugin's modules,
imports the entry point again from what is installed (new version, new code), registers it in
place of the old one and starts its slices. The other slices keep serving throughout.

A reload that fails at any step (the new code does not import, does not register the slice,
or does not start) puts the old modules, hooks and registrations back, starts the old slices
again and raises ``PluginError`` saying what failed; the slice's status row keeps the reason.
Nothing is ever half old and half new.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import logging
import sys
from types import ModuleType
from typing import Any

from refactorbot._slots import SliceSlot, SlotHost
from refactorbot.errors import PluginError, SliceUnavailable, one_line
from refactorbot.plugins import (
    ENTRY_POINT_GROUP,
    Escaped,
    Hung,
    PluginRecord,
    Registered,
    Registry,
    describe_exception,
    import_entry_point,
    scan_entry_points,
)

log = logging.getLogger("refactorbot.master")

#: The host's own package: never forgotten by a reload, even when a plugin's entry point is inside it.
_CORE = "refactorbot"


class Reloading(SlotHost):
    """``reload_slice``: the slices of one plugin restarted with the code installed now."""

    _before_op: bool
    _after_op: bool
    _reload_lock: asyncio.Lock | None = None

    async def reload_slice(self, slice_id: str) -> None:
        """Restart ``slice_id`` (and the other slices its plugin registers) with the code installed now.

        Requests already running on it finish first (at most ``[core] drain_timeout`` seconds);
        new ones get ``slice_unavailable`` ("is reloading") until it is back. Raise
        ``SliceUnavailable`` for an unknown slice and ``PluginError`` when the reload failed, in
        which case the old code runs again (or the slice is ``failed`` if even that cannot start).
        """
        slot = self._slots.get(slice_id)
        if slot is None:
            known = ", ".join(sorted(self._slots)) or "none"
            raise SliceUnavailable(f"unknown slice '{slice_id}' (installed and enabled: {known})")
        if self._reload_lock is None:
            self._reload_lock = asyncio.Lock()
        async with self._reload_lock:
            await self._reload_plugin(slot)

    async def _reload_plugin(self, slot: SliceSlot) -> None:
        name = slot.plugin
        source = self.plugins.sources.get(name)
        if source is None:
            raise PluginError(
                f"slice '{slot.slice_id}' was registered by {name}, which is not an installed distribution;"
                " only plugins installed with an entry point can be reloaded"
            )
        slots = [self._slots[sid] for sid in self._order if self._slots[sid].plugin == name]
        running = {s.slice_id for s in slots if s.instance is not None}
        old_version = self.plugins.records[name].version if name in self.plugins.records else None
        log.info("reloading plugin %s (%s): slices %s", name, old_version or "?", ", ".join(s.slice_id for s in slots))
        for s in reversed(slots):
            await self._quiesce(s)
        backup = _Backup.take(self, name, slots)
        try:
            version = await self._swap_code(name, source, slots)
        except PluginError as exc:
            backup.restore(self)
            await self._restart(slots, running, f"reload failed: {exc}; running {old_version or 'the old version'}")
            raise
        started: list[SliceSlot] = []
        for s in slots:
            if s.slice_id not in running:
                s.status = "stopped"
                await self._state.set_slice(s.slice_id, "stopped", plugin=name, version=s.cls.version, error=None)
                continue
            if not await self._bring_up(s):
                error = s.error
                for up in reversed(started):
                    await self._take_down(up)
                backup.restore(self)
                message = f"{name} {version or ''} installed, but slice '{s.slice_id}' failed to start: {error}"
                await self._restart(
                    slots, running, f"reload failed: {message}; running {old_version or 'the old version'}"
                )
                raise PluginError(one_line(message))
            s.restarts = 0
            started.append(s)
        log.info("reloaded plugin %s: %s -> %s", name, old_version or "?", version or "?")

    async def _quiesce(self, slot: SliceSlot) -> None:
        """Refuse new requests to ``slot``, let running ones finish (``drain_timeout``), stop it."""
        instance = slot.instance
        slot.status = "reloading"  # in memory; master.db records the slice stopped meanwhile
        if instance is None:
            return
        slot.instance = None  # route() now answers "slice '...' is reloading"
        if slot.inflight:
            slot.drained = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(slot.drained.wait(), self._budget(self.settings.core.drain_timeout, 0.5))
            slot.drained = None
            if slot.inflight:
                log.warning(
                    "slice %s: %d request(s) still running after %gs; stopping it under them",
                    slot.slice_id,
                    slot.inflight,
                    self.settings.core.drain_timeout,
                    extra={"slice_id": slot.slice_id},
                )
        slot.instance = instance  # _take_down takes it again before its first await
        await self._take_down(slot)
        slot.status = "reloading"

    async def _restart(self, slots: list[SliceSlot], running: set[str], error: str) -> None:
        """Start again, with the code now in place, the slices that ran before a failed reload."""
        for s in slots:
            if s.slice_id in running and await self._bring_up(s):
                s.error = error
                await self._state.set_slice(s.slice_id, s.status, error=error)
            elif s.slice_id not in running:
                s.status, s.error = "stopped", error
                await self._state.set_slice(s.slice_id, "stopped", error=error)

    async def _swap_code(self, name: str, source: tuple[str, str, str], slots: list[SliceSlot]) -> str | None:
        """Import the plugin again from what is installed and register it in place of the old one.

        Return the new version. Raise ``PluginError`` (the caller restores the backup) when the
        distribution is gone, the import fails or hangs, registration fails, or a slice of
        ``slots`` is no longer registered.
        """
        ep_name, value, dist = source
        importlib.invalidate_caches()
        scan_entry_points.cache_clear()
        value, version = _installed_entry_point(dist, ep_name, value)
        _forget_modules(_top_packages(dist, value))
        runner = self.plugins._runner
        try:
            plugin = await asyncio.to_thread(runner.run, functools.partial(import_entry_point, value), name)
        except Hung as hung:
            raise PluginError(f"importing {value} did not finish within {hung.seconds:g}s") from None
        except Escaped as exc:
            raise PluginError(f"importing {value} {exc}") from None
        except Exception as exc:  # any import-time error of the new code
            raise PluginError(f"importing {value} failed: {describe_exception(exc)}") from None
        pm = self.plugins.pm
        old = pm.get_plugin(name)
        if old is not None:
            pm.unregister(old)
        for kind in Registry.KINDS.values():
            table = self.plugins.registry.of(kind)
            for key in [k for k, reg in table.items() if reg.plugin == name]:
                del table[key]
        record = PluginRecord(name=name, version=version, entry_point=f"{ep_name} = {value}")
        try:
            self.plugins.add(plugin, record)
        except Exception as exc:  # strict mode raises what it would record
            record.status, record.error = "failed", describe_exception(exc)
        if record.status != "ok":
            raise PluginError(f"{name} {version or ''}: {record.status}: {record.error}")
        registered = self.plugins.registry.slices
        for s in slots:
            reg = registered.get(s.slice_id)
            if reg is None or reg.plugin != name:
                raise PluginError(f"{name} {version or ''} no longer registers slice '{s.slice_id}'")
        for s in slots:
            s.cls = registered[s.slice_id].obj
        self.plugins.sources[name] = (ep_name, value, dist)
        self._before_op = self.plugins.has_impls("before_operation")
        self._after_op = self.plugins.has_impls("after_operation")
        return version


class _Backup:
    """What a reload replaces, to put back when it fails: modules, plugin object, record, registry."""

    def __init__(self) -> None:
        self.name = ""
        self.modules: dict[str, ModuleType] = {}
        self.plugin: Any = None
        self.record: PluginRecord | None = None
        self.source: tuple[str, str, str] | None = None
        self.tables: dict[str, dict[str, Registered]] = {}
        self.classes: dict[str, Any] = {}

    @classmethod
    def take(cls, host: Reloading, name: str, slots: list[SliceSlot]) -> _Backup:
        backup = cls()
        backup.name = name
        source = host.plugins.sources[name]
        backup.source = source
        backup.modules = {
            mod: module for mod, module in sys.modules.items() if _in_packages(mod, _top_packages(source[2], source[1]))
        }
        backup.plugin = host.plugins.pm.get_plugin(name)
        backup.record = host.plugins.records.get(name)
        backup.tables = {kind: dict(host.plugins.registry.of(kind)) for kind in Registry.KINDS.values()}
        backup.classes = {s.slice_id: s.cls for s in slots}
        return backup

    def restore(self, host: Reloading) -> None:
        plugins = host.plugins
        assert self.source is not None
        tops = _top_packages(self.source[2], self.source[1]) | {
            mod.partition(".")[0] for mod in self.modules if mod.partition(".")[0] != _CORE
        }
        _forget_modules(tops)
        sys.modules.update(self.modules)
        current = plugins.pm.get_plugin(self.name)
        if current is not None and current is not self.plugin:
            plugins.pm.unregister(current)
        if self.plugin is not None and plugins.pm.get_plugin(self.name) is None:
            plugins.pm.register(self.plugin, name=self.name)
        if self.record is not None:
            plugins.records[self.name] = self.record
        plugins.sources[self.name] = self.source
        for kind, table in self.tables.items():
            live = plugins.registry.of(kind)
            live.clear()
            live.update(table)
        for slice_id, klass in self.classes.items():
            host._slots[slice_id].cls = klass
        host._before_op = plugins.has_impls("before_operation")
        host._after_op = plugins.has_impls("after_operation")


def _installed_entry_point(dist: str, ep_name: str, old_value: str) -> tuple[str, str | None]:
    """Return the entry point's value and the distribution's version as installed now."""
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        found = distribution(dist)
    except PackageNotFoundError:
        raise PluginError(f"distribution {dist} is no longer installed") from None
    points = [ep for ep in found.entry_points if ep.group == ENTRY_POINT_GROUP and ep.name == ep_name]
    if not points:
        raise PluginError(f"{dist} {found.version} no longer declares the entry point {ep_name!r}")
    return points[0].value or old_value, found.version


def _top_packages(dist: str, value: str) -> set[str]:
    """Return the top-level packages a reload of ``dist`` forgets: its entry point's, and its files'."""
    module = value.partition(":")[0].strip()
    tops = {module} if module.partition(".")[0] == _CORE else {module.partition(".")[0]}
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        files = distribution(dist).files or []
    except PackageNotFoundError:
        files = []
    for path in files:
        parts = path.parts
        if len(parts) > 1 and not parts[0].endswith((".dist-info", ".data")) and parts[0] != "..":
            tops.add(parts[0])
        elif len(parts) == 1 and path.suffix == ".py":
            tops.add(path.stem)
    tops.discard(_CORE)
    tops.discard("__pycache__")
    return tops


def _in_packages(module: str, tops: set[str]) -> bool:
    return any(module == top or module.startswith(top + ".") for top in tops)


def _forget_modules(tops: set[str]) -> None:
    """Drop the modules of ``tops`` from ``sys.modules``, so the next import reads the files again."""
    for mod in [m for m in sys.modules if _in_packages(m, tops)]:
        del sys.modules[mod]
