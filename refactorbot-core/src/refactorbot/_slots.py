"""The host's slices: one ``SliceSlot`` each, brought up and taken down in dependency order.

``SlotHost`` is the base of ``MasterCore``'s parts (``_control``, ``_routing``, ``_supervision``,
``_watchdog_glue``): it declares the state they share and brings one slot up or down. Internal:
plugins use ``MasterCore``'s public members, typed by the ``Host`` protocol.
"""

from __future__ import annotations

import asyncio
import graphlib
import logging
import os
import time
from collections.abc import Mapping
from types import ModuleType
from typing import TYPE_CHECKING, Any

from refactorbot._isolation import IsolatedSlice, RemoteSlice, isolation_of, slice_config
from refactorbot.errors import ConfigError
from refactorbot.models import HealthState
from refactorbot.slice import AtomicSlice, SliceContext

if TYPE_CHECKING:
    from refactorbot.config import Settings
    from refactorbot.events import EventBus
    from refactorbot.metrics import Metrics
    from refactorbot.plugins import PluginHost
    from refactorbot.resources import ResourceAllocator
    from refactorbot.slice import Host
    from refactorbot.state import GlobalState

log = logging.getLogger("refactorbot.master")


class SliceSlot:
    """One slice known to the orchestrator: its class, instance, status and restart history."""

    def __init__(self, slice_id: str, cls: type[AtomicSlice], plugin: str) -> None:
        self.slice_id = slice_id
        self.cls = cls
        self.plugin = plugin
        self.instance: AtomicSlice | None = None
        self.status = "pending"
        self.health: str | None = None
        self.error: str | None = None
        self.restarts = 0
        self.heartbeat_at: float | None = None
        self.started_at: float | None = None
        self.next_restart_at: float | None = None
        self.unsubscribers: list[Any] = []
        #: Requests routed to this slice and not yet answered; ``drained`` is set when it drops to 0.
        self.inflight = 0
        self.drained: asyncio.Event | None = None

    def done(self) -> None:
        """Count one routed request of this slice as answered."""
        self.inflight -= 1
        if self.inflight == 0 and self.drained is not None:
            self.drained.set()


class SlotHost:
    """The state ``MasterCore``'s parts share, and bringing one slot up or down."""

    settings: Settings
    plugins: PluginHost
    env: Mapping[str, str] | None
    metrics: Metrics
    bus: EventBus
    _state: GlobalState
    _allocator: ResourceAllocator
    _slots: dict[str, SliceSlot]
    _order: list[str]
    _only: frozenset[str] | None
    _subset_ids: set[str] | None
    _running: bool
    _stopping: bool
    #: ``time.monotonic()`` by which a stop begun by a signal must be over (``serve_forever``).
    _deadline: float | None

    def _as_host(self) -> Host:
        """Return this host as the ``Host`` its slices see (``MasterCore`` implements it)."""
        raise NotImplementedError

    def _build_slots(self) -> None:
        self._slots.clear()
        for slice_id, reg in sorted(self.plugins.registry.slices.items()):
            if self.settings.slice_enabled(slice_id, self.env):
                self._slots[slice_id] = SliceSlot(slice_id, reg.obj, reg.plugin)
        graph = {sid: {r for r in slot.cls.requires if r in self._slots} for sid, slot in self._slots.items()}
        try:
            self._order = list(graphlib.TopologicalSorter(graph).static_order())
        except graphlib.CycleError as exc:
            log.error("slices require each other in a cycle %s; starting them alphabetically", exc.args[1])
            self._order = sorted(self._slots)

    def _subset(self) -> set[str] | None:
        """Return the slices to start for ``only`` (None: every enabled slice).

        The named slices, what they require, transitively (``requires`` is the declaration: a
        slice that calls another one it does not require gets ``SliceUnavailable`` in a subset),
        and the slices of plugins implementing a hook other than ``register_*``: such hooks act
        through their slice on calls any slice makes (the providers slice's LLM budgets, say).
        """
        if self._only is None:
            return None
        hooked = {
            impl.plugin_name
            for hook_name, caller in vars(self.plugins.pm.hook).items()
            if not hook_name.startswith("register_")
            for impl in caller.get_hookimpls()
        }
        todo = [*self._only, *(sid for sid, slot in self._slots.items() if slot.plugin in hooked)]
        wanted: set[str] = set()
        while todo:
            slice_id = todo.pop()
            if slice_id in self._slots and slice_id not in wanted:
                wanted.add(slice_id)
                todo.extend(self._slots[slice_id].cls.requires)
        return wanted

    async def _bring_up(self, slot: SliceSlot) -> bool:
        await self._state.set_slice(slot.slice_id, "initializing", plugin=slot.plugin, version=slot.cls.version)
        slot.status = "initializing"
        try:
            config = slice_config(self.settings, slot.slice_id, slot.cls.Config, self.env)
            ctx = SliceContext(slot.slice_id, self.settings.home, host=self._as_host(), settings=self.settings)
            instance = await self._instantiate(slot, ctx, config)
            await asyncio.wait_for(instance.initialize(), self.settings.core.start_timeout)
            slot.instance = instance  # initialized: it may serve calls, even from its own start()
            await asyncio.wait_for(instance.start(), self.settings.core.start_timeout)
        except Exception as exc:  # a slice failing to come up is reported; the others carry on
            if slot.instance is not None:  # initialized, then start failed: release what initialize opened
                try:
                    await asyncio.wait_for(slot.instance.shutdown(), self.settings.core.stop_timeout)
                except Exception as teardown:  # reported; the start failure below is what the slot keeps
                    log.error(
                        "slice %s: shutdown after a failed start failed too: %s: %s",
                        slot.slice_id,
                        type(teardown).__name__,
                        teardown,
                        extra={"slice_id": slot.slice_id},
                    )
            message = str(exc) if isinstance(exc, ConfigError) else f"{type(exc).__name__}: {exc}"
            slot.status, slot.error, slot.instance = "failed", message, None
            log.error("slice %s failed to start: %s", slot.slice_id, message, extra={"slice_id": slot.slice_id})
            await self._state.set_slice(slot.slice_id, "failed", error=message, restarts=slot.restarts)
            slot.next_restart_at = time.monotonic() + self._backoff(slot)
            return False
        slot.instance = instance
        slot.status, slot.error, slot.health = "running", None, HealthState.HEALTHY.value
        slot.started_at = slot.heartbeat_at = time.time()
        slot.next_restart_at = None
        self._subscribe(slot)
        await self._state.set_slice(
            slot.slice_id,
            "running",
            error=None,
            health=slot.health,
            restarts=slot.restarts,
            started_at=slot.started_at,
            heartbeat_at=slot.heartbeat_at,
        )
        return True

    async def _instantiate(self, slot: SliceSlot, ctx: SliceContext, config: Any) -> AtomicSlice:
        """Return the slice's instance, the proxy of its worker when ``isolation = "process"``,
        or its stand-in over a plugin's transport when ``location`` is not ``local``."""
        isolation = isolation_of(self.settings, slot.slice_id, self.env)
        if isolation.location != "local":
            return await self._remote(slot, ctx, config, isolation.location)
        if isolation.isolation == "inline":
            return slot.cls(ctx, config)
        source = self.plugins.sources.get(slot.plugin)
        if source is not None:
            plugin: tuple[str, str, str | None] = (slot.plugin, source[1], source[2])
        else:  # registered directly: the worker imports the same module by name
            obj = self.plugins.pm.get_plugin(slot.plugin)
            if not isinstance(obj, ModuleType):
                raise ConfigError(
                    f'[slices.{slot.slice_id}] isolation = "process" needs a plugin the worker can import'
                    f" (an installed distribution or a module); {slot.plugin} is a {type(obj).__name__}"
                )
            plugin = (slot.plugin, obj.__name__, None)

        async def report(status: str, error: str | None) -> None:
            if slot.instance is None:
                return
            if status == "failed":
                slot.health = HealthState.UNHEALTHY.value
            elif status == "degraded":
                slot.restarts += 1
            slot.status, slot.error = status, error
            await self._state.set_slice(slot.slice_id, status, error=error, restarts=slot.restarts)

        proxy = IsolatedSlice.of(slot.cls)
        return proxy(
            ctx, config, isolation=isolation, plugin=plugin, settings=self.settings, env=self.env, report=report
        )

    async def _remote(self, slot: SliceSlot, ctx: SliceContext, config: Any, location: str) -> AtomicSlice:
        """Return the stand-in of a slice served at ``location`` (``provide_slice_transport``)."""
        env = os.environ if self.env is None else self.env
        transport = await self.plugins.afirstresult(
            "provide_slice_transport", slice_id=slot.slice_id, location=location, config=self.settings, env=env
        )
        if transport is None:
            raise ConfigError(
                f"[slices.{slot.slice_id}] location = {location!r}: no installed plugin serves slices there"
                ' (location = "redis" needs refactorbot-bus-redis)'
            )
        return RemoteSlice.of(slot.cls)(ctx, config, location=location, transport=transport)

    def _subscribe(self, slot: SliceSlot) -> None:
        instance = slot.instance
        assert instance is not None
        if isinstance(instance, RemoteSlice):  # its handlers run where it is served
            return
        for attr in dir(slot.cls):
            func = getattr(slot.cls, attr, None)
            for pattern in getattr(func, "__rb_subscribe__", ()):
                handler = instance.subscriber(attr) if isinstance(instance, IsolatedSlice) else getattr(instance, attr)
                slot.unsubscribers.append(self.bus.subscribe(pattern, handler))

    async def _take_down(self, slot: SliceSlot, status: str = "stopped") -> None:
        for unsubscribe in slot.unsubscribers:
            unsubscribe()
        slot.unsubscribers.clear()
        instance, slot.instance = slot.instance, None
        if instance is None:
            return
        timeout = self._budget(self.settings.core.stop_timeout, 0.8)
        try:
            await asyncio.wait_for(instance.stop(), timeout)
        except Exception as exc:  # includes a stop that hangs past its timeout
            reason = f"stop timed out after {timeout:g}s" if isinstance(exc, TimeoutError) else f"stop raised {exc!r}"
            slot.error, status = reason, "failed"
            log.error("slice %s: %s", slot.slice_id, reason, extra={"slice_id": slot.slice_id})
        try:
            await asyncio.wait_for(instance.shutdown(), self._budget(timeout, 0.8))
        except Exception as exc:  # keep shutting the others down
            slot.error, status = f"shutdown failed: {exc!r}", "failed"
            log.error("slice %s: shutdown failed: %r", slot.slice_id, exc, extra={"slice_id": slot.slice_id})
        slot.status = status
        await self._state.set_slice(slot.slice_id, status, error=slot.error)

    def _backoff(self, slot: SliceSlot) -> float:
        core = self.settings.core
        return float(min(core.restart_backoff * 2**slot.restarts, core.restart_backoff_max))

    def _budget(self, limit: float, share: float) -> float:
        """Return ``limit``, cut to ``share`` of the time left when a signal set a stop deadline."""
        if self._deadline is None:
            return limit
        return max(0.0, min(limit, (self._deadline - time.monotonic()) * share))
