"""Process isolation: a slice in its own worker process, with enforced limits. Internal (see ``master``).

``[slices.<id>] isolation = "process"`` makes ``_bring_up`` build an ``IsolatedSlice`` instead of
the slice's class: a proxy that the host routes to exactly like an in-process slice, while the
slice's own code (the same ``AtomicSlice`` class) runs in ``python -m refactorbot._worker``.

The channel is a socketpair carrying length-prefixed JSON frames (4-byte big-endian length, then
one UTF-8 JSON object): asyncio reads it without a thread on both ends, nothing is unpickled
(a worker that misbehaves can send the host data, never objects or code), and a frame is
bounded (``MAX_FRAME``). Every value crossing it is a pydantic model dumped in JSON mode.

Limits (``[slices.<id>.limits]``): ``memory_mb`` (cgroup v2 ``memory.max`` when the host can
create a cgroup, else ``RLIMIT_AS``), ``cpu_seconds`` (``RLIMIT_CPU``, the worker's total CPU
time) and ``open_files`` (``RLIMIT_NOFILE``). A worker that dies (a segfault, an OOM kill,
``os._exit``, a CPU limit) fails its in-flight requests with a ``slice_crashed`` error naming the
cause and is started again with backoff; the host and the other slices are not affected.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from refactorbot.config import Settings, validate_section
from refactorbot.errors import RefactorbotError, one_line
from refactorbot.models import (
    DiagnosticReport,
    ErrorType,
    HealthState,
    HealthStatus,
    ImprovementFeedback,
    ImprovementPlan,
    Model,
    SliceRequest,
    SliceResponse,
)
from refactorbot.operations import Emit, OperationSpec
from refactorbot.slice import AtomicSlice, SliceContext

log = logging.getLogger("refactorbot.master")

#: Largest frame either end accepts (a longer one is a protocol error that ends the worker).
MAX_FRAME = 64 * 1024 * 1024
#: The error type of requests a worker's crash cut short.
CRASHED = ErrorType.SLICE_CRASHED
#: Keys of ``[slices.<id>]`` that belong to the host, not to the slice's ``Config``.
HOST_KEYS = ("enabled", "resources", "isolation", "limits", "location")
#: Lines of a worker's stderr kept to explain its crash.
STDERR_TAIL = 20


class ProtocolError(RefactorbotError):
    """Raise when a peer sends something that is not a frame of the worker protocol."""


class WorkerCrashed(RefactorbotError):
    """Raise in place of an answer a worker died before sending."""


class Limits(Model):
    """``[slices.<id>.limits]``: what an isolated slice's worker may use (omitted: no limit)."""

    model_config = ConfigDict(extra="forbid")

    memory_mb: int | None = Field(None, ge=32, description="memory, MB: cgroup v2 memory.max, else RLIMIT_AS")
    cpu_seconds: int | None = Field(None, ge=1, description="CPU time of the worker, seconds (RLIMIT_CPU)")
    open_files: int | None = Field(None, ge=16, description="open file descriptors (RLIMIT_NOFILE)")


class Isolation(Model):
    """How and where a slice runs: ``inline`` in the host's process (the default) or in its own ``process``.

    ``location`` other than ``local`` (``redis``, say) serves the slice elsewhere, through the
    transport a plugin's ``provide_slice_transport`` returns; ``isolation`` and ``limits`` then
    apply where it runs, not here.
    """

    model_config = ConfigDict(extra="forbid")

    isolation: Literal["inline", "process"] = "inline"
    limits: Limits = Field(default_factory=Limits)
    location: str = Field("local", pattern=r"^[a-z][a-z0-9_-]{0,31}$")


def isolation_of(settings: Settings, slice_id: str, env: Mapping[str, str] | None) -> Isolation:
    """Return ``[slices.<id>] isolation``, ``location`` and ``[slices.<id>.limits]``.

    ``RB_<ID>_ISOLATION`` and ``RB_<ID>_LOCATION`` override the file.
    """
    env = os.environ if env is None else env
    section = settings.slices.get(slice_id, {})
    data: dict[str, Any] = {k: section[k] for k in ("isolation", "limits", "location") if k in section}
    prefix = f"RB_{slice_id.upper().replace('-', '_').replace('.', '_')}"
    for key in ("isolation", "location"):
        override = env.get(f"{prefix}_{key.upper()}")
        if override:
            data[key] = override.strip()
    return validate_section(Isolation, data, f"[slices.{slice_id}]")


def slice_config(settings: Settings, slice_id: str, model: type[BaseModel], env: Mapping[str, str] | None) -> Any:
    """Return the slice's ``Config`` from ``[slices.<id>]`` (the host's keys are reserved there)."""
    return settings.slice_config(slice_id, model, env)


# -- frames --------------------------------------------------------------------------------------


def encode(message: Mapping[str, Any]) -> bytes:
    """Return one frame: the 4-byte big-endian length of the JSON, then the JSON."""
    body = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()
    if len(body) > MAX_FRAME:
        raise ProtocolError(f"a frame of {len(body)} bytes is over the {MAX_FRAME}-byte limit")
    return len(body).to_bytes(4, "big") + body


async def read_frame(reader: asyncio.StreamReader) -> dict[str, Any] | None:
    """Return the next frame's object, ``None`` at the end of the stream; ``ProtocolError`` if malformed."""
    try:
        header = await reader.readexactly(4)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise ProtocolError("the stream ended inside a frame header") from None
        return None
    size = int.from_bytes(header, "big")
    if size > MAX_FRAME:
        raise ProtocolError(f"a frame of {size} bytes is over the {MAX_FRAME}-byte limit")
    try:
        body = await reader.readexactly(size)
    except asyncio.IncompleteReadError:
        raise ProtocolError("the stream ended inside a frame") from None
    try:
        message = json.loads(body)
    except ValueError as exc:
        raise ProtocolError(f"a frame is not JSON: {exc}") from None
    if not isinstance(message, dict) or not isinstance(message.get("t"), str):
        raise ProtocolError("a frame is not a JSON object with a type 't'")
    return message


# -- crashes ---------------------------------------------------------------------------------------


def exit_reason(returncode: int, limits: Limits, oom_killed: bool, cgroup: bool) -> str:
    """Return why a worker ended, naming the limit it hit when that is the cause."""
    if returncode < 0:
        signum = -returncode
        try:
            name = signal.Signals(signum).name
        except ValueError:
            name = f"signal {signum}"
        if signum == signal.SIGXCPU and limits.cpu_seconds:
            return f"cpu_seconds limit exceeded: RLIMIT_CPU of {limits.cpu_seconds}s (killed by SIGXCPU)"
        if signum == signal.SIGKILL and oom_killed:
            return f"memory_mb limit exceeded: cgroup memory.max of {limits.memory_mb} MB (killed by the OOM killer)"
        if signum == signal.SIGKILL and limits.cpu_seconds and not cgroup:
            return f"killed by SIGKILL (the hard RLIMIT_CPU of {limits.cpu_seconds + 1}s, or another process)"
        if signum == signal.SIGSEGV:
            return "killed by SIGSEGV (segmentation fault in native code)"
        return f"killed by {name}"
    return f"exited with status {returncode} (os._exit, sys.exit in a thread, or a native library ended it)"


# -- cgroup v2 ----------------------------------------------------------------------------------


def _cgroup_for(slice_id: str, memory_mb: int) -> Path | None:
    """Create a cgroup v2 child of this process's cgroup with ``memory.max``; ``None`` when not allowed."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
        unified = next(line.partition("::")[2] for line in lines if line.startswith("0::"))
        base = Path("/sys/fs/cgroup") / unified.lstrip("/")
        if "memory" not in (base / "cgroup.controllers").read_text().split():
            return None
        group = base / f"refactorbot-{slice_id}-{os.getpid()}"
        group.mkdir(exist_ok=True)
        (group / "memory.max").write_text(str(memory_mb * 1_048_576))
        if (group / "memory.swap.max").exists():
            (group / "memory.swap.max").write_text("0")
        return group
    except (OSError, StopIteration):
        return None


def _oom_kills(group: Path | None) -> int:
    if group is None:
        return 0
    try:
        for line in (group / "memory.events").read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
    except (OSError, ValueError):
        pass
    return 0


# -- the proxy -----------------------------------------------------------------------------------


class _Forward:
    """A slice's event handler in the host that hands each event to the worker (looks like the method)."""

    def __init__(self, proxy: IsolatedSlice, func: Any) -> None:
        self.__self__ = proxy
        self.__func__ = func
        self.__name__ = getattr(func, "__name__", "handler")

    async def __call__(self, event: Any) -> None:
        await self.__self__.deliver(self.__name__, event)


class IsolatedSlice(AtomicSlice):
    """The host's stand-in for a slice running in a worker process: same operations, same lifecycle."""

    uses_database: ClassVar[bool] = False
    real: ClassVar[type[AtomicSlice]]

    @classmethod
    def of(cls, real: type[AtomicSlice]) -> type[IsolatedSlice]:
        """Return the proxy class of ``real`` (its slice id, version and operations)."""
        attrs = {"real": real, "slice_id": real.slice_id, "version": real.version, "requires": real.requires}
        return type(f"Isolated{real.__name__}", (cls,), attrs)

    @classmethod
    def operations(cls) -> dict[str, OperationSpec]:
        return cls.real.operations()

    def __init__(
        self,
        ctx: SliceContext,
        config: BaseModel,
        *,
        isolation: Isolation,
        plugin: tuple[str, str, str | None],
        settings: Settings,
        env: Mapping[str, str] | None,
        report: Callable[[str, str | None], Awaitable[None]],
    ) -> None:
        super().__init__(ctx, config)
        self.limits = isolation.limits
        self.plugin = plugin
        self.settings = settings
        self.env = env
        self.report = report
        self.pid: int | None = None
        self.crashes = 0
        self.last_crash: str | None = None
        self.down: str | None = None  # why requests are refused now (a restart after a crash)
        self._proc: asyncio.subprocess.Process | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._emits: dict[int, Emit] = {}
        self._ids = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stderr: deque[str] = deque(maxlen=STDERR_TAIL)
        self._closing = False
        self._cgroup: Path | None = None
        self._restarter: asyncio.Task[None] | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    async def initialize(self) -> None:
        await self._spawn()
        await self._ask("hook", method="initialize")

    async def start(self) -> None:
        await self._ask("hook", method="start")

    async def stop(self) -> None:
        if self._restarter is not None:
            self._restarter.cancel()
        if self._alive():
            await self._ask("hook", method="stop")

    async def shutdown(self) -> None:
        self._closing = True
        try:
            if self._alive():
                await self._ask("hook", method="shutdown")
        finally:
            await self._end_worker()

    async def health_check(self) -> HealthStatus:
        if self.down is not None:
            return HealthStatus(status=HealthState.DEGRADED, message=self.down)
        if not self._alive():
            return HealthStatus(status=HealthState.UNHEALTHY, message=self.last_crash or "the worker is not running")
        return HealthStatus.model_validate(await self._ask("hook", method="health_check"))

    async def run_self_diagnostics(self) -> DiagnosticReport:
        return DiagnosticReport.model_validate(await self._ask("hook", method="run_self_diagnostics"))

    async def self_improve(self, feedback: ImprovementFeedback) -> ImprovementPlan:
        value = await self._ask("hook", method="self_improve", args=feedback.model_dump(mode="json"))
        return ImprovementPlan.model_validate(value)

    def info(self) -> dict[str, Any]:
        """Return what the status row shows of the worker: pid, limits, crashes and the last one's cause."""
        return {
            "mode": "process",
            "pid": self.pid,
            "limits": self.limits.model_dump(),
            "memory": "cgroup" if self._cgroup is not None else "rlimit" if self.limits.memory_mb else None,
            "crashes": self.crashes,
            "last_crash": self.last_crash,
        }

    # -- requests -----------------------------------------------------------------------------

    async def execute(self, request: SliceRequest, emit: Emit | None = None) -> SliceResponse:
        if self.down is not None or not self._alive():
            why = self.down or self.last_crash or "its worker is not running"
            return SliceResponse.failure(request, ErrorType.SLICE_UNAVAILABLE, f"slice '{self.slice_id}' is {why}")
        try:
            value = await self._ask("call", request=request.model_dump(mode="json"), emit=emit)
        except WorkerCrashed as exc:
            message = f"slice '{self.slice_id}' crashed while running {request.target}: {exc}"
            return SliceResponse.failure(request, CRASHED, message)
        except (TypeError, ValueError, ProtocolError) as exc:  # a payload that cannot cross as JSON
            return SliceResponse.failure(request, ErrorType.INVALID_PAYLOAD, f"{request.target}: {one_line(exc)}")
        return SliceResponse.model_validate(value)

    def subscriber(self, attr: str) -> _Forward:
        """Return the host-side handler of the slice's ``@subscribe`` method ``attr``."""
        return _Forward(self, getattr(self.real, attr))

    async def deliver(self, attr: str, event: Any) -> None:
        """Hand ``event`` to the worker's handler ``attr`` (dropped, and logged, while it restarts)."""
        if self.down is not None or not self._alive():
            log.warning("slice %s: event %s not delivered: the worker is down", self.slice_id, event.topic)
            return
        await self._ask("event", attr=attr, event=event.model_dump(mode="json"))

    # -- the worker ---------------------------------------------------------------------------

    def _alive(self) -> bool:
        return self._proc is not None and self._proc.returncode is None and self._writer is not None

    async def _spawn(self) -> None:
        parent, child = socket.socketpair()
        limits = self.limits.model_dump()
        if self.limits.memory_mb:
            self._cgroup = _cgroup_for(self.slice_id, self.limits.memory_mb)
            if self._cgroup is not None:
                limits["memory_mb"] = None  # the cgroup enforces it; RLIMIT_AS would count address space
        try:
            self._proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "refactorbot._worker",
                str(child.fileno()),
                json.dumps(limits),
                pass_fds=(child.fileno(),),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
        finally:
            child.close()
        self.pid = self._proc.pid
        if self._cgroup is not None:
            try:
                (self._cgroup / "cgroup.procs").write_text(str(self.pid))
            except OSError:
                self._cgroup = None
        reader, self._writer = await asyncio.open_connection(sock=parent, limit=MAX_FRAME)
        proc = self._proc
        self._watch(self._read(reader), self._stderr_lines(proc), self._wait(proc))
        name, value, dist = self.plugin
        await self._ask(
            "init",
            slice_id=self.slice_id,
            plugin={"name": name, "value": value, "dist": dist},
            settings=self.settings.model_dump(mode="json"),
            env=None if self.env is None else dict(self.env),
            path=list(sys.path),
            running=self._running(),
        )

    def _watch(self, *coros: Any) -> None:
        for coro in coros:
            task = asyncio.get_running_loop().create_task(coro)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _running(self) -> list[str]:
        host = self.ctx.host
        return list(host.slice_ids()) if host is not None else []

    async def _ask(self, kind: str, emit: Emit | None = None, **fields: Any) -> Any:
        """Send one request frame to the worker and return its answer's value."""
        if self._writer is None:
            raise WorkerCrashed(self.last_crash or "the worker is not running")
        self._ids += 1
        ident = self._ids
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[ident] = future
        if emit is not None:
            self._emits[ident] = emit
        try:
            self._writer.write(encode({"t": kind, "id": ident, "stream": emit is not None, **fields}))
            await self._writer.drain()
            return await future
        except asyncio.CancelledError:  # the caller's timeout or cancellation: the worker stops it too
            if self._alive():
                with contextlib.suppress(Exception):
                    assert self._writer is not None
                    self._writer.write(encode({"t": "cancel", "id": ident}))
            raise
        except (ConnectionError, BrokenPipeError) as exc:
            raise WorkerCrashed(self.last_crash or f"the worker's channel broke: {exc}") from None
        finally:
            self._pending.pop(ident, None)
            self._emits.pop(ident, None)

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while (message := await read_frame(reader)) is not None:
                await self._dispatch(message)
        except (ProtocolError, ConnectionError) as exc:
            log.error("slice %s: worker sent a bad frame (%s); ending it", self.slice_id, exc)
            if self._proc is not None and self._proc.returncode is None:
                self._proc.kill()

    async def _dispatch(self, message: dict[str, Any]) -> None:
        kind = message["t"]
        ident = message.get("id")
        if kind == "result":
            future = self._pending.get(ident) if isinstance(ident, int) else None
            if future is not None and not future.done():
                if message.get("ok"):
                    future.set_result(message.get("value"))
                else:
                    future.set_exception(RefactorbotError(str(message.get("error"))))
        elif kind == "chunk":
            emit = self._emits.get(ident) if isinstance(ident, int) else None
            if emit is not None:
                await emit(message.get("chunk"))
        elif kind == "log":
            level = message.get("level")
            logging.getLogger(str(message.get("name") or "refactorbot.slice")).log(
                level if isinstance(level, int) else logging.INFO,
                "%s",
                str(message.get("message")),
                extra={"slice_id": self.slice_id},
            )
        elif kind in ("route", "publish", "complete"):
            self._watch(self._serve(kind, ident, message))
        else:
            raise ProtocolError(f"unknown frame type {kind!r}")

    async def _serve(self, kind: str, ident: Any, message: dict[str, Any]) -> None:
        """Run a ``ctx.call``/``publish``/``complete`` the worker's slice made, and answer it."""
        host = self.ctx.host
        try:
            if host is None:
                raise RefactorbotError("no host")
            if kind == "route":
                request = SliceRequest.model_validate(message.get("request"))
                request.caller = self.slice_id
                value: Any = (await host.route(request)).model_dump(mode="json")
            elif kind == "publish":
                from refactorbot.events import Event

                event = Event.model_validate(message.get("event"))
                event.source = self.slice_id
                await host.publish(event)
                value = None
            else:
                from refactorbot.llm import LLMCall

                call = LLMCall.model_validate(message.get("call"))
                call.slice_id = self.slice_id
                value = (await host.complete(call)).model_dump(mode="json")
            answer = {"t": "reply", "id": ident, "ok": True, "value": value}
        except Exception as exc:  # the answer carries the error's type and message to the worker
            answer = {"t": "reply", "id": ident, "ok": False, "type": type(exc).__name__, "error": one_line(exc)}
        if self._alive():
            assert self._writer is not None
            with contextlib.suppress(ConnectionError):
                self._writer.write(encode(answer))

    async def _stderr_lines(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stderr is not None
        async for raw in proc.stderr:
            line = raw.decode(errors="replace").rstrip()
            if line:
                self._stderr.append(line)
                log.warning("slice %s worker: %s", self.slice_id, line, extra={"slice_id": self.slice_id})

    async def _wait(self, proc: asyncio.subprocess.Process) -> None:
        returncode = await proc.wait()
        if self._closing or proc is not self._proc:
            return
        reason = exit_reason(returncode, self.limits, _oom_kills(self._cgroup) > 0, self._cgroup is not None)
        self.crashes += 1
        self.last_crash = reason
        self._writer = None
        for future in list(self._pending.values()):
            if not future.done():
                future.set_exception(WorkerCrashed(reason))
        self._restarter = asyncio.get_running_loop().create_task(self._restart(reason))

    async def _restart(self, reason: str) -> None:
        """Start the worker again after ``reason`` with exponential backoff, up to ``restart_attempts``."""
        core = self.settings.core
        for attempt in range(1, core.restart_attempts + 1):
            delay = min(core.restart_backoff * 2 ** (attempt - 1), core.restart_backoff_max)
            self.down = f"restarting after a crash ({reason}); attempt {attempt} in {delay:g}s"
            log.error("slice %s crashed: %s; restarting in %gs", self.slice_id, reason, delay)
            await self.report("degraded", f"crashed: {reason}; restarting (attempt {attempt})")
            await asyncio.sleep(delay)
            try:
                await self._end_worker()
                self._closing = False
                await asyncio.wait_for(self.initialize(), core.start_timeout)
                await asyncio.wait_for(self.start(), core.start_timeout)
            except Exception as exc:  # the next attempt, or give up below
                reason = f"restart failed: {type(exc).__name__}: {one_line(exc)}"
                continue
            self.down = None
            log.warning("slice %s restarted in a new worker (pid %s)", self.slice_id, self.pid)
            await self.report("running", None)
            return
        self.down = None  # health_check now answers unhealthy: the supervisor takes the slice down
        await self.report("failed", f"crashed: {reason}; gave up after {core.restart_attempts} restarts")

    async def _end_worker(self) -> None:
        """Close the channel, let the worker exit (``stop_timeout``), kill it if it does not."""
        self._closing = True
        proc, writer = self._proc, self._writer
        self._writer = None
        if writer is not None:
            with contextlib.suppress(Exception):
                writer.write(encode({"t": "exit"}))
                writer.close()
        if proc is not None and proc.returncode is None:
            try:
                await asyncio.wait_for(proc.wait(), self.settings.core.stop_timeout)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        for task in list(self._tasks):
            if task is not asyncio.current_task():
                task.cancel()
        if self._cgroup is not None:
            with contextlib.suppress(OSError):
                self._cgroup.rmdir()
            self._cgroup = None


# -- a slice served elsewhere ---------------------------------------------------------------------


class SliceTransport(Protocol):
    """What ``provide_slice_transport`` returns: requests of one slice, served somewhere else.

    ``execute`` never raises: a peer that cannot be reached or does not answer in time is a
    failed ``SliceResponse`` saying so.
    """

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def execute(self, request: SliceRequest) -> SliceResponse: ...


class RemoteSlice(AtomicSlice):
    """The host's stand-in for a slice served at another ``location`` through a ``SliceTransport``.

    The host routes to it like to any slice (hooks, limits, the operation log and metrics apply
    here); its ``@subscribe`` handlers run where the slice runs, on the bus both share.
    """

    uses_database: ClassVar[bool] = False
    real: ClassVar[type[AtomicSlice]]

    @classmethod
    def of(cls, real: type[AtomicSlice]) -> type[RemoteSlice]:
        """Return the stand-in class of ``real`` (its slice id, version and operations)."""
        attrs = {"real": real, "slice_id": real.slice_id, "version": real.version, "requires": real.requires}
        return type(f"Remote{real.__name__}", (cls,), attrs)

    @classmethod
    def operations(cls) -> dict[str, OperationSpec]:
        return cls.real.operations()

    def __init__(self, ctx: SliceContext, config: BaseModel, *, location: str, transport: SliceTransport) -> None:
        super().__init__(ctx, config)
        self.location = location
        self.transport = transport
        self._started = False

    async def initialize(self) -> None:
        await self.transport.start()
        self._started = True

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def shutdown(self) -> None:
        if self._started:
            self._started = False
            await self.transport.stop()

    async def health_check(self) -> HealthStatus:
        if not self._started:
            return HealthStatus(status=HealthState.UNHEALTHY, message=f"the {self.location} transport is stopped")
        return HealthStatus(status=HealthState.HEALTHY, message=f"served at location {self.location}")

    async def run_self_diagnostics(self) -> DiagnosticReport:
        return DiagnosticReport(slice_id=self.slice_id, checks=[])

    def info(self) -> dict[str, Any]:
        """Return what the status row shows: where the slice is served, and through what."""
        return {"mode": self.location, "transport": type(self.transport).__name__}

    async def execute(self, request: SliceRequest, emit: Emit | None = None) -> SliceResponse:
        if emit is not None:
            why = f"{request.target} streams its answer; slice '{self.slice_id}' at location {self.location} answers whole"
            return SliceResponse.failure(request, ErrorType.OPERATION_ERROR, why)
        if not self._started:
            why = f"slice '{self.slice_id}': the {self.location} transport is stopped"
            return SliceResponse.failure(request, ErrorType.SLICE_UNAVAILABLE, why)
        try:
            return await self.transport.execute(request)
        except Exception as exc:  # a transport that broke its contract: the caller still gets an answer
            why = f"slice '{self.slice_id}' at location {self.location}: {type(exc).__name__}: {one_line(exc)}"
            return SliceResponse.failure(request, ErrorType.SLICE_UNAVAILABLE, why)
