"""``MasterCore``: assemble the installed slices, supervise them and route every request.

``MasterCore`` is the façade: construction, start and stop, and the members of the ``Host``
protocol. Its parts live in internal modules, one concern each:

- ``_slots``: each slice's slot, brought up and taken down in dependency order;
- ``_control``: which slices run, start/stop/restart one, status rows and records;
- ``_routing``: requests and streams through hooks, limits, the operation log and metrics;
- ``_llm_routing``: LLM calls through the gateways and the LLM hooks;
- ``_reload``: hot reload of one plugin's slices with the code installed now;
- ``_supervision``: health checks, restarts with backoff, heartbeats;
- ``_watchdog_glue``: who owns code that blocks the event loop, and what gets recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from refactorbot import logformat, tracing
from refactorbot._control import Control
from refactorbot._llm_routing import LLMRouting
from refactorbot._reload import Reloading
from refactorbot._routing import Routing
from refactorbot._slots import SliceSlot
from refactorbot._supervision import Supervision
from refactorbot._watchdog_glue import WatchdogGlue
from refactorbot.config import Settings, load_settings
from refactorbot.errors import RefactorbotError, one_line
from refactorbot.events import EventBus, InMemoryEventBus
from refactorbot.home import secure_home
from refactorbot.llm import LLMGateway
from refactorbot.metrics import Metrics
from refactorbot.plugins import PluginHost
from refactorbot.resources import ResourceAllocator
from refactorbot.slice import Host
from refactorbot.state import GlobalState, StateLogHandler
from refactorbot.watchdog import LoopWatchdog

log = logging.getLogger(__name__)


class MasterCore(Routing, LLMRouting, Control, Reloading, Supervision, WatchdogGlue):
    """The orchestrator: one asyncio loop, one SQLite file per slice, ``master.db`` for itself.

    Public: the ``Host`` protocol's members, ``settings``, ``home``, ``bus``, ``start``/``stop``/
    ``serve_forever``, ``call``/``astream``, ``running_slices``, ``slice_status`` and the slice
    controls (``reload_slice`` among them). Names with a leading underscore are the host's own and
    may change at any time.
    """

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
        self._state = GlobalState(settings.master_db)
        self.metrics = Metrics()
        self._allocator = ResourceAllocator(lambda sid: settings.slice_resources(sid, env))
        self.bus: EventBus = InMemoryEventBus(settings.core.event_queue_size)
        self._slots: dict[str, SliceSlot] = {}
        self._order: list[str] = []
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
        #: What ``provide_tracer`` returned (in use while the host runs, unless a newer host's is).
        self._tracer: tracing.Tracer | None = None
        #: Console formatters ``[core] log_format = "json"`` replaced, put back at stop.
        self._saved_formats: list[tuple[logging.Handler, logging.Formatter | None]] = []

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
        await self._state.open()
        level = logging.getLevelName(self.settings.core.log_level.upper())
        self._log_handler = StateLogHandler(self._state, level)
        package_logger = logging.getLogger("refactorbot")
        package_logger.addHandler(self._log_handler)
        self._saved_log_level = package_logger.level
        if package_logger.getEffectiveLevel() > level:  # let [core] log_level reach the unified log
            package_logger.setLevel(level)
        self._saved_formats = logformat.use_format(self.settings.core.log_format)
        provided = await self.plugins.afirstresult(
            "provide_event_bus", config=self.settings, env=os.environ if self.env is None else self.env
        )
        if provided is not None:
            self.bus = provided
        tracer = await self.plugins.afirstresult(
            "provide_tracer", config=self.settings, env=os.environ if self.env is None else self.env
        )
        if tracer is not None:  # installed for the process until this host stops
            self._tracer = tracer
            tracing.push(tracer)
        await self.bus.start()
        self._build_slots()
        self._subset_ids = self._subset()
        for slice_id in self._order:
            if self._subset_ids is None or slice_id in self._subset_ids:
                await self._bring_up(self._slots[slice_id])
        self._running = True
        for result in self.plugins.call_isolated("startup", host=self):
            if asyncio.iscoroutine(result):
                timeout = self.settings.core.start_timeout
                try:
                    await asyncio.wait_for(result, timeout)
                except Exception as exc:  # a plugin's startup hook failed or hung; the host stays up
                    self._hook_failed("startup", result, exc, timeout)
        self._supervisor = asyncio.get_running_loop().create_task(self._supervise(), name="supervisor")
        log.info("started %d of %d slices", len(self.running_slices()), len(self._slots))

    def _as_host(self) -> Host:
        return self

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
        for slice_id in reversed(self._order):
            await self._take_down(self._slots[slice_id])
        await self.bus.stop()
        await self._close_gateways()
        if self._log_handler is not None:
            logging.getLogger("refactorbot").removeHandler(self._log_handler)
            logging.getLogger("refactorbot").setLevel(self._saved_log_level)
        logformat.restore(self._saved_formats)
        self._saved_formats = []
        await self._state.close()
        if self._tracer is not None:
            tracing.remove(self._tracer)
            tracer, self._tracer = self._tracer, None
            try:
                await asyncio.to_thread(tracer.shutdown)  # exports what is buffered
            except Exception:  # a tracer failing to flush must not fail the stop
                log.exception("the tracer failed to shut down")
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
