"""The worker process of an isolated slice: ``python -m refactorbot._worker FD LIMITS``.

Started by ``refactorbot._isolation.IsolatedSlice``. It sets its limits first (``RLIMIT_AS``,
``RLIMIT_CPU``, ``RLIMIT_NOFILE``), then reads frames from the socket ``FD``: ``init`` (import the
plugin, build the slice), ``hook`` (a lifecycle method), ``call`` (an operation), ``event``,
``cancel``, ``reply`` (the host's answer to this slice's ``ctx.call``/``publish``/``complete``)
and ``exit``. The end of the stream (the host is gone) ends the worker too.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import faulthandler
import functools
import json
import logging
import os
import resource
import socket
import sys
from collections.abc import AsyncIterator, Mapping
from typing import Any

LIMITS = {"memory_mb": resource.RLIMIT_AS, "cpu_seconds": resource.RLIMIT_CPU, "open_files": resource.RLIMIT_NOFILE}


def apply_limits(limits: Mapping[str, int | None]) -> None:
    """Set this process's resource limits (soft and hard; CPU's hard limit one second later)."""
    for name, which in LIMITS.items():
        value = limits.get(name)
        if not value:
            continue
        soft = value * 1_048_576 if name == "memory_mb" else value
        hard = soft + 1 if name == "cpu_seconds" else soft
        resource.setrlimit(which, (soft, hard))


class WorkerHost:
    """The ``Host`` a slice sees in its worker: calls, events and LLM calls go to the real host."""

    def __init__(self, worker: Worker, settings: Any, env: Mapping[str, str] | None, plugins: Any) -> None:
        from refactorbot.metrics import Metrics

        self._worker = worker
        self.settings = settings
        self._env = env
        self._plugins = plugins
        self._metrics = Metrics()
        self.running: list[str] = []

    @property
    def serving(self) -> bool:
        return True

    @property
    def stopping(self) -> bool:
        return False

    @property
    def env(self) -> Mapping[str, str] | None:
        return self._env

    @property
    def plugins(self) -> Any:
        return self._plugins

    @property
    def metrics(self) -> Any:
        return self._metrics

    async def route(self, request: Any) -> Any:
        from refactorbot.models import SliceResponse

        value = await self._worker.ask("route", request=request.model_dump(mode="json"))
        return SliceResponse.model_validate(value)

    async def publish(self, event: Any) -> None:
        await self._worker.ask("publish", event=event.model_dump(mode="json"))

    async def complete(self, call: Any) -> Any:
        from refactorbot.llm import LLMResponse

        return LLMResponse.model_validate(await self._worker.ask("complete", call=call.model_dump(mode="json")))

    async def stream(self, call: Any) -> AsyncIterator[Any]:
        """Stream an LLM answer: in a worker, the whole answer arrives as one chunk."""
        from refactorbot.llm import LLMChunk

        response = await self.complete(call)
        yield LLMChunk(content=response.content, finish_reason="stop")

    def has_slice(self, slice_id: str) -> bool:
        return slice_id in self.running

    def instance(self, slice_id: str) -> None:
        return None  # another slice's object lives in another process

    def slice_ids(self) -> list[str]:
        return list(self.running)

    def _unavailable(self, what: str) -> Any:
        from refactorbot.errors import SliceUnavailable

        raise SliceUnavailable(f"{what} is not available to a slice running in its own process")

    def gateway_for(self, call: Any) -> Any:
        return self._unavailable("gateway_for")

    def slice_class(self, slice_id: str) -> Any:
        return self._unavailable("slice_class")

    def slice_status(self) -> Any:
        return self._unavailable("slice_status")

    def resources(self) -> Any:
        return self._unavailable("resources")

    async def master_db(self) -> Any:
        return self._unavailable("master_db")

    async def reload_slice(self, slice_id: str) -> None:
        self._unavailable("reload_slice")


class _Forwarder(logging.Handler):
    """Send the worker's log records to the host, which writes them to its unified log."""

    def __init__(self, worker: Worker) -> None:
        super().__init__(logging.DEBUG)
        self.worker = worker

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):
            self.worker.send({"t": "log", "name": record.name, "level": record.levelno, "message": self.format(record)})


class Worker:
    """One isolated slice's worker: its channel, its slice and the requests running in it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, limits: Mapping[str, Any]) -> None:
        self.reader = reader
        self.writer = writer
        self.limits = limits
        self.instance: Any = None
        self.host: WorkerHost | None = None
        self.tasks: dict[int, asyncio.Task[None]] = {}
        self.waiting: dict[int, asyncio.Future[Any]] = {}
        self.ids = 0

    def send(self, message: dict[str, Any]) -> None:
        from refactorbot._isolation import encode

        self.writer.write(encode(message))

    async def ask(self, kind: str, **fields: Any) -> Any:
        """Send a request to the host and return its answer (raising the error it reports)."""
        self.ids += 1
        ident = self.ids
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.waiting[ident] = future
        try:
            self.send({"t": kind, "id": ident, **fields})
            await self.writer.drain()
            return await future
        finally:
            self.waiting.pop(ident, None)

    async def run(self) -> None:
        from refactorbot._isolation import read_frame

        while (message := await read_frame(self.reader)) is not None:
            kind = message["t"]
            ident = message.get("id")
            if kind == "exit":
                break
            if kind == "cancel":
                task = self.tasks.get(ident) if isinstance(ident, int) else None
                if task is not None:
                    task.cancel()
            elif kind == "reply":
                self._answered(ident, message)
            elif isinstance(ident, int):
                task = asyncio.get_running_loop().create_task(self._answer(ident, kind, message))
                self.tasks[ident] = task
                task.add_done_callback(functools.partial(self._forget, ident))

    def _forget(self, ident: int, _: object) -> None:
        self.tasks.pop(ident, None)

    def _answered(self, ident: Any, message: dict[str, Any]) -> None:
        future = self.waiting.get(ident) if isinstance(ident, int) else None
        if future is None or future.done():
            return
        if message.get("ok"):
            future.set_result(message.get("value"))
            return
        from refactorbot import errors

        kind = getattr(errors, str(message.get("type")), None)
        if not (isinstance(kind, type) and issubclass(kind, errors.RefactorbotError)):
            kind = errors.RefactorbotError
        future.set_exception(kind(str(message.get("error"))))

    async def _answer(self, ident: int, kind: str, message: dict[str, Any]) -> None:
        try:
            value = await self._handle(ident, kind, message)
            answer: dict[str, Any] = {"t": "result", "id": ident, "ok": True, "value": value}
        except asyncio.CancelledError:
            return
        except Exception as exc:  # the host raises it where it asked
            from refactorbot.errors import one_line

            answer = {"t": "result", "id": ident, "ok": False, "error": f"{type(exc).__name__}: {one_line(exc)}"}
        self.send(answer)
        await self.writer.drain()

    async def _handle(self, ident: int, kind: str, message: dict[str, Any]) -> Any:
        if kind == "init":
            return self._init(message)
        if kind == "call":
            return await self._call(ident, message)
        if kind == "hook":
            return await self._hook(str(message.get("method")), message.get("args"))
        if kind == "event":
            from refactorbot.events import Event

            handler = getattr(self.instance, str(message.get("attr")))
            await handler(Event.model_validate(message.get("event")))
            return None
        raise ValueError(f"unknown frame type {kind!r}")

    def _init(self, message: dict[str, Any]) -> Any:
        from refactorbot._isolation import slice_config
        from refactorbot.config import Settings
        from refactorbot.plugins import PluginHost
        from refactorbot.slice import SliceContext

        for entry in reversed(message.get("path") or []):
            if isinstance(entry, str) and entry not in sys.path:
                sys.path.insert(0, entry)
        env = message.get("env")
        plugin = message["plugin"]
        slice_id = str(message["slice_id"])
        plugins = PluginHost(env)
        record = plugins.load_entry_point(
            str(plugin["name"]), str(plugin["value"]), str(plugin["dist"] or plugin["name"])
        )
        if record.status != "ok":
            raise RuntimeError(f"plugin {record.name} {record.status}: {record.error}")
        registered = plugins.registry.slices.get(slice_id)
        if registered is None:
            raise RuntimeError(f"plugin {record.name} does not register slice '{slice_id}'")
        settings = Settings.model_validate(message["settings"])
        self.host = WorkerHost(self, settings, env, plugins)
        self.host.running = list(message.get("running") or [])
        ctx = SliceContext(slice_id, settings.home, host=self.host, settings=settings)
        cls = registered.obj
        self.instance = cls(ctx, slice_config(settings, slice_id, cls.Config, env))
        return {"pid": os.getpid(), "version": cls.version}

    async def _call(self, ident: int, message: dict[str, Any]) -> Any:
        from refactorbot.models import ErrorType, SliceRequest, SliceResponse

        request = SliceRequest.model_validate(message.get("request"))

        async def emit(chunk: Any) -> None:
            self.send({"t": "chunk", "id": ident, "chunk": chunk})
            await self.writer.drain()

        try:
            response = await self.instance.execute(request, emit if message.get("stream") else None)
        except MemoryError:
            response = SliceResponse.failure(request, ErrorType.OPERATION_ERROR, f"{request.target} raised MemoryError")
        return self._name_limit(request, response).model_dump(mode="json")

    def _name_limit(self, request: Any, response: Any) -> Any:
        """Report a failure caused by one of the worker's limits as ``resource_limit``, naming the limit."""
        from refactorbot.models import ErrorType, SliceResponse

        message = response.error_message or ""
        if response.success:
            return response
        if "raised MemoryError" in message and self.limits.get("memory_mb"):
            why = f"memory_mb limit exceeded: RLIMIT_AS of {self.limits['memory_mb']} MB ({request.target} raised MemoryError)"
        elif f"[Errno {errno.EMFILE}]" in message and self.limits.get("open_files"):
            why = f"open_files limit reached: RLIMIT_NOFILE of {self.limits['open_files']} ({message})"
        else:
            return response
        return SliceResponse.failure(request, ErrorType.RESOURCE_LIMIT, why, response.duration_ms)

    async def _hook(self, method: str, args: Any) -> Any:
        instance = self.instance
        if method in ("initialize", "start", "stop", "shutdown"):
            await getattr(instance, method)()
            return None
        if method == "health_check":
            return (await instance.health_check()).model_dump(mode="json")
        if method == "run_self_diagnostics":
            return (await instance.run_self_diagnostics()).model_dump(mode="json")
        if method == "self_improve":
            from refactorbot.models import ImprovementFeedback

            plan = await instance.self_improve(ImprovementFeedback.model_validate(args or {}))
            return plan.model_dump(mode="json")
        raise ValueError(f"unknown hook {method!r}")


async def serve(fd: int, limits: Mapping[str, Any]) -> None:
    """Serve the host on the socket ``fd`` until it says ``exit`` or goes away."""
    sock = socket.socket(fileno=fd)
    from refactorbot._isolation import MAX_FRAME

    reader, writer = await asyncio.open_connection(sock=sock, limit=MAX_FRAME)
    worker = Worker(reader, writer, limits)
    forwarder = _Forwarder(worker)
    package = logging.getLogger("refactorbot")
    package.addHandler(forwarder)
    package.setLevel(logging.INFO)
    package.propagate = False
    try:
        await worker.run()
    finally:
        package.removeHandler(forwarder)
        with contextlib.suppress(Exception):
            writer.close()


def main(argv: list[str]) -> int:
    fd, limits = int(argv[1]), json.loads(argv[2])
    apply_limits(limits)
    faulthandler.enable()  # a segfault prints the Python stack on stderr, which the host logs
    asyncio.run(serve(fd, limits))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
