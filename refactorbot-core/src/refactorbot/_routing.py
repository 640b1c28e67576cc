"""Routing: every request through hooks, limits and its slice; the operation log and metrics.

Internal (see ``master``): ``call``/``route`` for one answer, ``astream``/``route_stream`` for a
streamed one, ``publish`` for events.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Coroutine
from typing import Any

from refactorbot import tracing
from refactorbot._slots import SliceSlot, SlotHost
from refactorbot.errors import OperationTimeout, RateLimited, ResourceLimitExceeded
from refactorbot.events import Event
from refactorbot.models import ErrorType, SliceRequest, SliceResponse
from refactorbot.operations import Emit, OperationStream
from refactorbot.slice import AtomicSlice

log = logging.getLogger("refactorbot.master")


class Routing(SlotHost):
    """Route requests, one answer or a stream, with ``before_operation``/``after_operation`` around them."""

    _inflight: int
    _idle: asyncio.Event
    _before_op: bool
    _after_op: bool
    #: ``after_operation`` calls still running; ``stop`` waits for them (see ``_drain_observers``).
    _observers: set[asyncio.Task[None]]

    async def call(self, target: str, /, **payload: Any) -> SliceResponse:
        """Route ``"slice.operation"`` with ``payload`` and return the response."""
        slice_id, _, op = target.partition(".")
        return await self.route(SliceRequest(slice_id=slice_id, operation=op, payload=payload))

    async def route(self, request: SliceRequest) -> SliceResponse:
        """Run one request through hooks, limits and the slice; log and measure it. Never raises.

        With a tracer installed (``provide_tracer``), the request runs inside its operation's span.
        """
        make_span = tracing._operation  # the tracer's operation_span, None when tracing is off
        if make_span is None:
            return await self._route(request)
        scope = make_span(request)
        if scope is tracing.UNRECORDED_TRACE:  # a new trace nothing records: current for this call
            token = tracing.TRACEPARENT.set(request.traceparent)
            try:
                return await self._route(request)
            finally:
                tracing.TRACEPARENT.reset(token)
        if scope is tracing.NOOP_SPAN:  # no span of its own
            return await self._route(request)
        with scope as span:
            response = await self._route(request)
            span.end(response)
        return response

    async def _traced(self, request: SliceRequest, work: Coroutine[Any, Any, SliceResponse]) -> SliceResponse:
        """Await ``work`` inside the span of ``request``'s operation (a child of ``request.traceparent``)."""
        with tracing.operation_span(request) as span:
            response = await work
            span.end(response)
        return response

    async def _route(self, request: SliceRequest) -> SliceResponse:
        started = time.perf_counter()
        slot = self._slots.get(request.slice_id)
        if self._stopping or slot is None or slot.instance is None:
            return self._finish(request, started, self._unavailable(request, slot))
        self._inflight += 1
        slot.inflight += 1
        self._idle.clear()
        try:
            response = await self._run(request, slot.instance, started)
        finally:
            slot.done()
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
            return await self._allocator.run(request.slice_id, request.target, work)  # type: ignore[no-any-return]
        except OperationTimeout as exc:
            return SliceResponse.failure(request, ErrorType.TIMEOUT, str(exc))
        except (RateLimited, ResourceLimitExceeded) as exc:
            return SliceResponse.failure(request, ErrorType.RESOURCE_LIMIT, str(exc))

    def _unavailable(self, request: SliceRequest, slot: SliceSlot | None) -> SliceResponse:
        if self._stopping:
            why = "the host is shutting down"
        elif slot is None:
            known = ", ".join(sorted(self._slots)) or "none"
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
            self._state.log_operation(
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
        slot = self._slots.get(request.slice_id)
        if self._stopping or slot is None or slot.instance is None:
            out.response = self._finish(request, started, self._unavailable(request, slot))
            return
        self._inflight += 1
        slot.inflight += 1
        self._idle.clear()
        queue: asyncio.Queue[Any] = asyncio.Queue()  # unbounded: the operation never waits on its reader
        done = object()

        async def emit(chunk: Any) -> None:
            queue.put_nowait(chunk)

        work = self._run(request, slot.instance, started, emit)
        if tracing._operation is not None:
            work = self._traced(request, work)
        producer = asyncio.get_running_loop().create_task(work, name=f"stream {request.target}")
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
            slot.done()
            self._inflight -= 1
            if self._inflight == 0:
                self._idle.set()
            out.response = self._finish(request, started, response)

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

    # -- events ----------------------------------------------------------------------------

    async def publish(self, event: Event) -> None:
        """Publish ``event`` on the bus (with tracing on, in a ``publish <topic>`` span it carries)."""
        tracer = tracing.tracer()
        if tracer is None:
            await self.bus.publish(event)
            return
        attributes: dict[str, tracing.AttributeValue] = {
            "messaging.system": "refactorbot",
            "messaging.operation.type": "send",
            "messaging.destination.name": event.topic,
        }
        if event.source is not None:
            attributes["refactorbot.slice"] = event.source
        with tracer.span(f"publish {event.topic}", kind="producer", attributes=attributes) as span:
            event.traceparent = event.traceparent or span.traceparent
            await self.bus.publish(event)
