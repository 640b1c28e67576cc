"""``MasterCore``: assemble the installed slices, supervise them and route every request."""

from __future__ import annotations

import asyncio
import contextlib
import graphlib
import logging
import signal
import sqlite3
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from refactorbot.config import Settings, load_settings
from refactorbot.errors import (
    ConfigError,
    GatewayError,
    LLMCallRefused,
    OperationTimeout,
    RateLimited,
    RefactorbotError,
    ResourceLimitExceeded,
    SliceUnavailable,
    one_line,
)
from refactorbot.events import Event, EventBus, InMemoryEventBus
from refactorbot.home import secure_home
from refactorbot.llm import LLMCall, LLMChunk, LLMGateway, LLMResponse, ToolCallRequest, Usage
from refactorbot.metrics import Metrics
from refactorbot.models import ErrorType, HealthState, SliceRequest, SliceResponse
from refactorbot.operations import Emit, OperationStream
from refactorbot.plugins import PluginHost
from refactorbot.resources import ResourceAllocator
from refactorbot.slice import AtomicSlice, SliceContext
from refactorbot.state import GlobalState, StateLogHandler
from refactorbot.watchdog import Block, CodeOwners, LoopWatchdog, Owner

log = logging.getLogger(__name__)


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


class MasterCore:
    """The orchestrator: one asyncio loop, one SQLite file per slice, ``master.db`` for itself."""

    def __init__(
        self,
        settings: Settings,
        plugins: PluginHost,
        env: Mapping[str, str] | None = None,
        *,
        serving: bool = True,
        only: Iterable[str] | None = None,
    ) -> None:
        """Build a host; ``start`` brings it up.

        ``only`` names the slices a one-shot command needs: ``start`` then starts just those, the
        slices they require (transitively) and the slices of plugins that implement a runtime hook
        (see ``_subset``). Every other enabled slice stays ``pending``, and a call to it answers
        ``slice_unavailable``. ``None`` (the default) starts every enabled slice.
        """
        self.settings = settings
        self.plugins = plugins
        self.env = env
        #: False for one-shot commands (``refactorbot call``, ``slices``): plugins then skip
        #: long-running services such as the API server in their ``startup`` hook.
        self.serving = serving
        self.state = GlobalState(settings.master_db)
        self.metrics = Metrics()
        self.allocator = ResourceAllocator(lambda sid: settings.slice_resources(sid, env))
        self.bus: EventBus = InMemoryEventBus(settings.core.event_queue_size)
        self.slots: dict[str, SliceSlot] = {}
        self.order: list[str] = []
        self._only = None if only is None else frozenset(only)
        self._subset_ids: set[str] | None = None  # what ``start`` brought up when ``only`` was given
        self._gateways: dict[str, LLMGateway] = {}
        self._running = False
        self._stopping = False
        self._inflight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._supervisor: asyncio.Task[None] | None = None
        self._log_handler: StateLogHandler | None = None
        self._saved_log_level = logging.NOTSET
        self._before_op = plugins.has_impls("before_operation")
        self._after_op = plugins.has_impls("after_operation")
        #: ``after_operation`` calls still running; ``stop`` waits for them (see ``_drain_observers``).
        self._observers: set[asyncio.Task[None]] = set()
        self._watchdog: LoopWatchdog | None = None
        #: ``time.monotonic()`` by which a stop begun by a signal must be over (``serve_forever``).
        self._deadline: float | None = None

    @classmethod
    def from_environment(
        cls, home: str | Path | None = None, config_file: str | Path | None = None, env: Mapping[str, str] | None = None
    ) -> MasterCore:
        """Return a host built from ``refactorbot.toml``, ``RB_*`` variables and installed plugins."""
        settings = load_settings(home, config_file, env)
        plugins = PluginHost(env)
        plugins.load_entrypoints()
        return cls(settings, plugins, env)

    @property
    def home(self) -> Path:
        """Return the home directory."""
        return self.settings.home

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Open ``master.db``, then initialize and start every enabled slice in dependency order.

        From here to the end of ``stop`` a watchdog thread reports code that blocks the event loop
        for more than ``[core] loop_block_threshold`` seconds (see ``refactorbot.watchdog``).
        """
        self._ensure_watchdog()
        secure_home(self.settings.home)  # created 0700: private from the first instant, not once master.db opens
        await self.state.open()
        level = logging.getLevelName(self.settings.core.log_level.upper())
        self._log_handler = StateLogHandler(self.state, level)
        package_logger = logging.getLogger("refactorbot")
        package_logger.addHandler(self._log_handler)
        self._saved_log_level = package_logger.level
        if package_logger.getEffectiveLevel() > level:  # let [core] log_level reach the unified log
            package_logger.setLevel(level)
        provided = await self.plugins.afirstresult("provide_event_bus", config=self.settings)
        if provided is not None:
            self.bus = provided
        await self.bus.start()
        self._build_slots()
        self._subset_ids = self._subset()
        for slice_id in self.order:
            if self._subset_ids is None or slice_id in self._subset_ids:
                await self._bring_up(self.slots[slice_id])
        self._running = True
        for result in self.plugins.call_isolated("startup", host=self):
            if asyncio.iscoroutine(result):
                timeout = self.settings.core.start_timeout
                try:
                    await asyncio.wait_for(result, timeout)
                except Exception as exc:  # a plugin's startup hook failed or hung; the host stays up
                    self._hook_failed("startup", result, exc, timeout)
        self._supervisor = asyncio.get_running_loop().create_task(self._supervise(), name="supervisor")
        log.info("started %d of %d slices", len(self.running_slices()), len(self.slots))

    def _build_slots(self) -> None:
        self.slots.clear()
        for slice_id, reg in sorted(self.plugins.registry.slices.items()):
            if self.settings.slice_enabled(slice_id, self.env):
                self.slots[slice_id] = SliceSlot(slice_id, reg.obj, reg.plugin)
        graph = {sid: {r for r in slot.cls.requires if r in self.slots} for sid, slot in self.slots.items()}
        try:
            self.order = list(graphlib.TopologicalSorter(graph).static_order())
        except graphlib.CycleError as exc:
            log.error("slices require each other in a cycle %s; starting them alphabetically", exc.args[1])
            self.order = sorted(self.slots)

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
        todo = [*self._only, *(sid for sid, slot in self.slots.items() if slot.plugin in hooked)]
        wanted: set[str] = set()
        while todo:
            slice_id = todo.pop()
            if slice_id in self.slots and slice_id not in wanted:
                wanted.add(slice_id)
                todo.extend(self.slots[slice_id].cls.requires)
        return wanted

    async def _bring_up(self, slot: SliceSlot) -> bool:
        await self.state.set_slice(slot.slice_id, "initializing", plugin=slot.plugin, version=slot.cls.version)
        slot.status = "initializing"
        try:
            config = self.settings.slice_config(slot.slice_id, slot.cls.Config, self.env)
            ctx = SliceContext(slot.slice_id, self.settings.home, host=self, settings=self.settings)
            instance = slot.cls(ctx, config)
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
            await self.state.set_slice(slot.slice_id, "failed", error=message, restarts=slot.restarts)
            slot.next_restart_at = time.monotonic() + self._backoff(slot)
            return False
        slot.instance = instance
        slot.status, slot.error, slot.health = "running", None, HealthState.HEALTHY.value
        slot.started_at = slot.heartbeat_at = time.time()
        slot.next_restart_at = None
        self._subscribe(slot)
        await self.state.set_slice(
            slot.slice_id,
            "running",
            error=None,
            health=slot.health,
            restarts=slot.restarts,
            started_at=slot.started_at,
            heartbeat_at=slot.heartbeat_at,
        )
        return True

    def _subscribe(self, slot: SliceSlot) -> None:
        assert slot.instance is not None
        for attr in dir(type(slot.instance)):
            func = getattr(type(slot.instance), attr, None)
            for pattern in getattr(func, "__rb_subscribe__", ()):
                slot.unsubscribers.append(self.bus.subscribe(pattern, getattr(slot.instance, attr)))

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
        await self.state.set_slice(slot.slice_id, status, error=slot.error)

    async def stop(self) -> None:
        """Refuse new requests, let in-flight ones finish (or time out), stop slices, flush writes."""
        if self._stopping:
            return
        self._stopping = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._idle.wait(), self._budget(self.settings.core.drain_timeout, 0.5))
        await self._drain_observers()
        for result in self.plugins.call_isolated("shutdown", host=self):
            if asyncio.iscoroutine(result):
                timeout = self._budget(self.settings.core.stop_timeout, 0.8)
                try:
                    await asyncio.wait_for(result, timeout)
                except Exception as exc:  # a plugin's shutdown hook failed or hung; keep going
                    self._hook_failed("shutdown", result, exc, timeout)
        for slice_id in reversed(self.order):
            await self._take_down(self.slots[slice_id])
        await self.bus.stop()
        for name, gateway in self._gateways.items():
            try:
                await gateway.aclose()
            except Exception as exc:  # one gateway failing to close must not keep the others open
                log.warning("gateway %s failed to close: %s: %s", name, type(exc).__name__, exc)
        if self._log_handler is not None:
            logging.getLogger("refactorbot").removeHandler(self._log_handler)
            logging.getLogger("refactorbot").setLevel(self._saved_log_level)
        await self.state.close()
        self._running = False
        if self._watchdog is not None:
            self._watchdog.close()
            self._watchdog = None

    def _hook_failed(self, hook_name: str, coro: Any, exc: Exception, timeout: float) -> None:
        """Log a failed or hung ``startup``/``shutdown`` hook: its plugin and the cause, on one line.

        That line is what a user sees (``API: port 8787 on 127.0.0.1 is already in use ...``); the
        traceback goes to the unified log, and to the console with ``--debug``.
        """
        plugin = self.plugins.owner_of(hook_name, coro) or "a plugin"
        if isinstance(exc, TimeoutError):
            log.error("%s hook of %s did not finish within %gs", hook_name, plugin, timeout)
            return
        cause = one_line(exc) if isinstance(exc, RefactorbotError) else one_line(f"{type(exc).__name__}: {exc}")
        log.error("%s hook of %s failed: %s", hook_name, plugin, cause, exc_info=exc)

    async def _drain_observers(self) -> None:
        """Wait for running ``after_operation`` calls, at most the stop timeout; cancel the rest."""
        if not self._observers:
            return
        timeout = self._budget(self.settings.core.stop_timeout, 0.5)
        _, late = await asyncio.wait(set(self._observers), timeout=timeout)
        if late:
            log.error("%d after_operation call(s) did not finish within %gs of the stop; cancelled", len(late), timeout)
            for task in late:
                task.cancel()
            await asyncio.wait(late)

    def _budget(self, limit: float, share: float) -> float:
        """Return ``limit``, cut to ``share`` of the time left when a signal set a stop deadline."""
        if self._deadline is None:
            return limit
        return max(0.0, min(limit, (self._deadline - time.monotonic()) * share))

    async def __aenter__(self) -> MasterCore:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def serve_forever(self, ready: Callable[[], None] | None = None) -> None:
        """Start (unless started), call ``ready()``, run until SIGINT or SIGTERM, then stop gracefully.

        The signals are handled before anything starts, by the watchdog thread, so they work
        while plugin code blocks the event loop. The first one begins a graceful stop, which has
        ``[core] stop_timeout`` seconds: past them, or on a second signal, the watchdog logs what
        holds the loop and ends the process with status 128 + the signal's number. Call from
        the main thread; after a signal the process ends.
        """
        stop = asyncio.Event()
        watchdog = self._ensure_watchdog()

        def on_signal(signum: int) -> None:
            self._deadline = watchdog.deadline
            stop.set()

        watchdog.handle_signals((signal.SIGINT, signal.SIGTERM), on_signal, self.settings.core.stop_timeout)
        try:
            if not self._running:
                await self.start()
            if ready is not None:
                ready()
            await stop.wait()
        finally:
            await self.stop()

    # -- the event-loop watchdog -----------------------------------------------------------

    def _ensure_watchdog(self) -> LoopWatchdog:
        if self._watchdog is None:
            self._watchdog = LoopWatchdog(
                asyncio.get_running_loop(),
                threshold=self.settings.core.loop_block_threshold,
                owners=self._code_owners(),
                on_block=self._on_block,
                on_exit=self._last_words,
            )
            self._watchdog.start()
        return self._watchdog

    def _code_owners(self) -> CodeOwners:
        """Map the code of every registered slice, object and hook to the slice or plugin it belongs to."""
        owners = CodeOwners()
        registry = self.plugins.registry
        for slice_id, reg in registry.slices.items():
            owners.add_class(reg.obj, Owner("slice", slice_id, f"slice {slice_id}"))
        for kind in ("tools", "gateways", "channels"):
            for name, reg in registry.of(kind).items():
                if isinstance(reg.obj, type):
                    owners.add_class(reg.obj, Owner("plugin", reg.plugin, f"{kind[:-1]} {name}"))
        for hook_name, caller in vars(self.plugins.pm.hook).items():
            for impl in caller.get_hookimpls():
                owners.add_function(impl.function, Owner("hook", impl.plugin_name, f"{hook_name} hook"))
        return owners

    def _on_block(self, block: Block) -> None:
        """Log a blocked event loop and mark the slice or plugin whose code held it (watchdog thread)."""
        owner = block.owner
        slot = self.slots.get(owner.name) if owner is not None and owner.kind == "slice" else None
        extra = {"slice_id": slot.slice_id} if slot is not None else {}
        if block.over:
            log.warning("the event loop was blocked for %.1fs by %s", block.seconds, block.culprit(), extra=extra)
            mark = f"blocked the event loop for {block.seconds:.1f}s at {block.where}"
        else:
            log.error(
                "the event loop has been blocked for %.1fs by %s; its stack (most recent call last):\n%s",
                block.seconds,
                block.culprit(),
                block.stack.rstrip(),
                extra=extra,
            )
            mark = f"blocking the event loop (for {block.seconds:.1f}s so far) at {block.where}"
        if slot is not None:
            slot.error = mark
            if block.over:
                with contextlib.suppress(RuntimeError):  # the loop is closed: nothing to record
                    asyncio.run_coroutine_threadsafe(self._record_block(slot), self._watchdog_loop())
        elif owner is not None and (record := self.plugins.records.get(owner.name)) is not None:
            record.error = f"{owner.part} {mark}"

    def _watchdog_loop(self) -> asyncio.AbstractEventLoop:
        assert self._watchdog is not None
        return self._watchdog.loop

    async def _record_block(self, slot: SliceSlot) -> None:
        if self._running and not self._stopping:
            await self.state.set_slice(slot.slice_id, slot.status, error=slot.error)

    def _last_words(self, block: Block, reason: str) -> None:
        """Record a forced exit in ``master.db`` from the watchdog thread, the loop being stuck."""
        path = self.settings.master_db
        if not path.exists():
            return
        owner = block.owner
        slice_id = owner.name if owner is not None and owner.kind == "slice" else None
        message = f"{reason}; the event loop was held by {block.culprit()}\n{block.stack}"
        db = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=1.0)
        try:
            db.execute(
                "INSERT INTO logs (ts, level, level_name, slice_id, logger, message) VALUES (?, ?, ?, ?, ?, ?)",
                (time.time(), logging.CRITICAL, "CRITICAL", slice_id, log.name, message[:8000]),
            )
            if slice_id is not None:
                db.execute(
                    "UPDATE slice_state SET error = ?, updated_at = ? WHERE slice_id = ?",
                    (f"held the event loop when the host was stopped: {block.where}", time.time(), slice_id),
                )
            db.commit()
        finally:
            db.close()

    # -- control ---------------------------------------------------------------------------

    def running_slices(self) -> list[str]:
        """Return the ids of slices that serve requests, in start order."""
        return [sid for sid in self.order if self.slots[sid].instance is not None]

    @property
    def stopping(self) -> bool:
        """Return whether ``stop()`` has begun: new requests are refused as ``slice_unavailable``."""
        return self._stopping

    def has_slice(self, slice_id: str) -> bool:
        """Return whether ``slice_id`` is running."""
        slot = self.slots.get(slice_id)
        return slot is not None and slot.instance is not None

    def instance(self, slice_id: str) -> AtomicSlice | None:
        """Return the running instance of ``slice_id``, if any."""
        slot = self.slots.get(slice_id)
        return None if slot is None else slot.instance

    async def start_slice(self, slice_id: str) -> bool:
        """Start a stopped or failed slice; return whether it runs."""
        slot = self._slot(slice_id)
        if slot.instance is not None:
            return True
        return await self._bring_up(slot)

    async def stop_slice(self, slice_id: str) -> None:
        """Stop a running slice (it stays stopped until started)."""
        await self._take_down(self._slot(slice_id))

    async def restart_slice(self, slice_id: str) -> bool:
        """Stop then start a slice; return whether it runs."""
        slot = self._slot(slice_id)
        await self._take_down(slot)
        slot.restarts += 1
        return await self._bring_up(slot)

    def _slot(self, slice_id: str) -> SliceSlot:
        slot = self.slots.get(slice_id)
        if slot is None:
            known = ", ".join(sorted(self.slots)) or "none"
            raise SliceUnavailable(f"unknown slice '{slice_id}' (installed and enabled: {known})")
        return slot

    def slice_status(self) -> list[dict[str, Any]]:
        """Return one status row per slice: state, health, heartbeat age, restarts, metrics."""
        now = time.time()
        rows = []
        for sid in sorted(self.slots):
            slot = self.slots[sid]
            rows.append(
                {
                    "slice_id": sid,
                    "plugin": slot.plugin,
                    "version": slot.cls.version,
                    "status": slot.status,
                    "health": slot.health,
                    "heartbeat_age_s": None if slot.heartbeat_at is None else round(now - slot.heartbeat_at, 1),
                    "restarts": slot.restarts,
                    "error": slot.error,
                    "requires": list(slot.cls.requires),
                    **self.metrics.slice_summary(sid),
                }
            )
        return rows

    # -- routing ---------------------------------------------------------------------------

    async def call(self, target: str, /, **payload: Any) -> SliceResponse:
        """Route ``"slice.operation"`` with ``payload`` and return the response."""
        slice_id, _, op = target.partition(".")
        return await self.route(SliceRequest(slice_id=slice_id, operation=op, payload=payload))

    async def route(self, request: SliceRequest) -> SliceResponse:
        """Run one request through hooks, limits and the slice; log and measure it. Never raises."""
        started = time.perf_counter()
        slot = self.slots.get(request.slice_id)
        if self._stopping or slot is None or slot.instance is None:
            return self._finish(request, started, self._unavailable(request, slot))
        self._inflight += 1
        self._idle.clear()
        try:
            response = await self._run(request, slot.instance, started)
        finally:
            self._inflight -= 1
            if self._inflight == 0:
                self._idle.set()
        return self._finish(request, started, response)

    async def _run(
        self, request: SliceRequest, instance: AtomicSlice, started: float, emit: Emit | None = None
    ) -> SliceResponse:
        if self._before_op:  # a reason (or a hook that broke) refuses: see PluginHost.aveto
            reason = await self.plugins.aveto("before_operation", request=request)
            if reason is not None:
                return SliceResponse.failure(request, ErrorType.REFUSED, f"refused: {reason}")
        try:
            work = instance.execute(request) if emit is None else instance.execute(request, emit)
            return await self.allocator.run(request.slice_id, request.target, work)  # type: ignore[no-any-return]
        except OperationTimeout as exc:
            return SliceResponse.failure(request, ErrorType.TIMEOUT, str(exc))
        except (RateLimited, ResourceLimitExceeded) as exc:
            return SliceResponse.failure(request, ErrorType.RESOURCE_LIMIT, str(exc))

    def _unavailable(self, request: SliceRequest, slot: SliceSlot | None) -> SliceResponse:
        if self._stopping:
            why = "the host is shutting down"
        elif slot is None:
            known = ", ".join(sorted(self.slots)) or "none"
            why = f"unknown slice '{request.slice_id}' (installed and enabled: {known})"
        elif self._subset_ids is not None and request.slice_id not in self._subset_ids and slot.status == "pending":
            named = ", ".join(sorted(self._only or ())) or "no slice"
            why = (
                f"slice '{request.slice_id}' is not started: this one-shot host starts only {named} and the"
                " slices required (a slice declares the slices it calls in `requires`)"
            )
        else:
            why = f"slice '{request.slice_id}' is {slot.status}" + (f": {slot.error}" if slot.error else "")
        return SliceResponse.failure(request, ErrorType.SLICE_UNAVAILABLE, why)

    def _finish(self, request: SliceRequest, started: float, response: SliceResponse) -> SliceResponse:
        duration = (time.perf_counter() - started) * 1000
        response.duration_ms = duration
        self.metrics.record(request.slice_id, request.operation, duration, response.success)
        if self.settings.core.operation_log:
            self.state.log_operation(
                request.request_id,
                request.slice_id,
                request.operation,
                request.caller,
                response.success,
                response.error_type.value if response.error_type else None,
                response.error_message,
                duration,
            )
        if self._after_op:
            task = asyncio.get_running_loop().create_task(self._after(request, response), name="after_operation")
            self._observers.add(task)
            task.add_done_callback(self._observers.discard)
        return response

    async def _after(self, request: SliceRequest, response: SliceResponse) -> None:
        try:
            await self.plugins.acall("after_operation", request=request, response=response)
        except Exception:  # observers must not affect the request
            log.exception("after_operation hook failed for %s", request.target)

    # -- streamed routing (astream) ---------------------------------------------------------
    # One streamed request goes through the same steps as ``route``: ``before_operation``, the
    # slice's limits (one concurrency slot and the timeout for the whole stream), the operation
    # log, metrics and ``after_operation``, all recorded once when the stream ends.

    def astream(self, target: str, /, **payload: Any) -> OperationStream:
        """Route ``"slice.operation"`` and yield the chunks it emits; ``stream.response`` at the end."""
        slice_id, _, op = target.partition(".")
        return self.route_stream(SliceRequest(slice_id=slice_id, operation=op, payload=payload))

    def route_stream(self, request: SliceRequest) -> OperationStream:
        """Like ``route``, but the returned stream yields chunks as the operation emits them.

        Never raises: a refused, limited, failed or unknown request yields no chunks and leaves
        its failure in ``stream.response``. An operation not declared ``stream=True`` yields none.
        Leaving the loop early (``break``, ``aclose``, cancellation) cancels the operation, which is
        recorded as a failure.
        """
        return OperationStream(request, lambda out: self._stream_chunks(request, out))

    async def _stream_chunks(self, request: SliceRequest, out: OperationStream) -> AsyncGenerator[Any, None]:
        started = time.perf_counter()
        slot = self.slots.get(request.slice_id)
        if self._stopping or slot is None or slot.instance is None:
            out.response = self._finish(request, started, self._unavailable(request, slot))
            return
        self._inflight += 1
        self._idle.clear()
        queue: asyncio.Queue[Any] = asyncio.Queue()  # unbounded: the operation never waits on its reader
        done = object()

        async def emit(chunk: Any) -> None:
            queue.put_nowait(chunk)

        producer = asyncio.get_running_loop().create_task(
            self._run(request, slot.instance, started, emit), name=f"stream {request.target}"
        )
        producer.add_done_callback(lambda _: queue.put_nowait(done))
        delivered = 0
        try:
            while (chunk := await queue.get()) is not done:
                delivered += 1
                yield chunk
        finally:
            if not producer.done():  # the reader left early (or was cancelled): stop the operation
                producer.cancel()
                await asyncio.wait({producer})
            if producer.cancelled():
                why = f"{request.target}: the caller stopped reading after {delivered} chunk(s)"
                response = SliceResponse.failure(request, ErrorType.OPERATION_ERROR, why)
            elif (error := producer.exception()) is not None:  # a hook or limit broke in an unexpected way
                log.error("streaming %s failed: %r", request.target, error)
                why = f"{request.target} failed: {type(error).__name__}: {error}"
                response = SliceResponse.failure(request, ErrorType.OPERATION_ERROR, why)
            else:
                response = producer.result()
            self._inflight -= 1
            if self._inflight == 0:
                self._idle.set()
            out.response = self._finish(request, started, response)

    # -- events ----------------------------------------------------------------------------

    async def publish(self, event: Event) -> None:
        """Publish ``event`` on the bus."""
        await self.bus.publish(event)

    # -- LLM -------------------------------------------------------------------------------

    def gateway_for(self, call: LLMCall) -> LLMGateway:
        """Return the gateway serving ``call``: named, matched by model prefix, or the default."""
        registered = self.plugins.registry.gateways
        if not registered:
            raise GatewayError("no LLM gateway is installed (pip install refactorbot-gateway-litellm)")
        name = (
            call.gateway
            or next(
                (n for n, r in sorted(registered.items()) if any(call.model.startswith(p) for p in r.obj.prefixes)),
                None,
            )
            or self.settings.llm.gateway
            or ("litellm" if "litellm" in registered else sorted(registered)[0])
        )
        if name not in registered:
            raise GatewayError(f"unknown gateway '{name}' (installed: {', '.join(sorted(registered))})")
        gateway = self._gateways.get(name)
        if gateway is None:
            gateway = self._gateways[name] = registered[name].obj(self.settings.gateways.get(name, {}))
        return gateway

    async def complete(self, call: LLMCall) -> LLMResponse:
        """Run ``before_llm_call`` (a veto refuses), the gateway, then ``after_llm_call``."""
        gateway = await self._prepare_llm_call(call)
        result = await gateway.complete(call.messages, call.model, call.tools, **call.params)
        result.gateway = result.gateway or gateway.name
        await self._after_llm(call, result)
        return result

    async def stream(self, call: LLMCall) -> AsyncIterator[LLMChunk]:
        """Like ``complete`` but yield chunks; ``after_llm_call`` sees the reassembled answer."""
        gateway = await self._prepare_llm_call(call)
        started = time.perf_counter()
        text: list[str] = []
        tool_calls: list[ToolCallRequest] = []
        last: LLMChunk | None = None
        async for chunk in gateway.stream(call.messages, call.model, call.tools, **call.params):
            text.append(chunk.content)
            tool_calls.extend(chunk.tool_calls)
            last = chunk
            yield chunk
        result = LLMResponse(
            content="".join(text),
            tool_calls=tool_calls,
            model=(last.model if last else "") or call.model,
            finish_reason=last.finish_reason if last else None,
            usage=(last.usage if last and last.usage else Usage()),
            cost_usd=last.cost_usd if last else None,
            latency_ms=(time.perf_counter() - started) * 1000,
            gateway=gateway.name,
        )
        await self._after_llm(call, result)

    async def _prepare_llm_call(self, call: LLMCall) -> LLMGateway:
        """Fill in model and gateway, run the ``before_llm_call`` veto, return the gateway to use.

        Hooks see the gateway the host would pick and may change ``call.model`` or
        ``call.gateway`` (model routing); the gateway is resolved again afterwards.
        """
        call.model = call.model or self.settings.llm.model
        call.gateway = call.gateway or self.gateway_for(call).name
        reason = await self.plugins.aveto("before_llm_call", call=call)
        if reason is not None:
            raise LLMCallRefused(f"LLM call refused: {reason}")
        return self.gateway_for(call)

    async def _after_llm(self, call: LLMCall, result: LLMResponse) -> None:
        try:
            await self.plugins.acall("after_llm_call", call=call, result=result)
        except Exception:  # cost tracking must not lose the answer
            log.exception("after_llm_call hook failed")

    # -- supervision -----------------------------------------------------------------------

    def _backoff(self, slot: SliceSlot) -> float:
        core = self.settings.core
        return float(min(core.restart_backoff * 2**slot.restarts, core.restart_backoff_max))

    async def _supervise(self) -> None:
        interval = self.settings.core.health_interval
        while True:
            await asyncio.sleep(interval)
            for slice_id in list(self.order):
                try:
                    await self._check(self.slots[slice_id])
                except Exception:  # supervision must survive anything a slice does
                    log.exception("supervising %s failed", slice_id)

    async def _check(self, slot: SliceSlot) -> None:
        if slot.instance is None:
            due = slot.next_restart_at
            retry = slot.status == "failed" and due is not None and time.monotonic() >= due
            if retry and slot.restarts < self.settings.core.restart_attempts:
                slot.restarts += 1
                log.warning("restarting slice %s (attempt %d)", slot.slice_id, slot.restarts)
                await self._bring_up(slot)
            return
        try:
            health = await asyncio.wait_for(slot.instance.health_check(), self.settings.core.stop_timeout)
            status, message = health.status, health.message
        except Exception as exc:  # an exploding health check means unhealthy
            status, message = HealthState.UNHEALTHY, f"health check failed: {type(exc).__name__}: {exc}"
        slot.health = status.value
        slot.heartbeat_at = time.time()
        if status is HealthState.UNHEALTHY:
            slot.error = message or "unhealthy"
            log.warning("slice %s unhealthy: %s", slot.slice_id, slot.error, extra={"slice_id": slot.slice_id})
            await self._take_down(slot, "failed")
            slot.next_restart_at = time.monotonic() + self._backoff(slot)
            return
        if status is HealthState.DEGRADED:  # say why, in `refactorbot slices` and the API's rows
            slot.error = message or "degraded"
        elif slot.status == "degraded":  # the degradation is over
            slot.error = None
        slot.status = "degraded" if status is HealthState.DEGRADED else "running"
        await self.state.set_slice(
            slot.slice_id, slot.status, health=slot.health, heartbeat_at=slot.heartbeat_at, error=slot.error
        )
