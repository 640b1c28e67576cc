"""Trace context: what a tracing plugin needs from the host, and nothing more.

The core does not trace. A plugin that implements ``provide_tracer`` hands the host a ``Tracer``;
from then on the host opens a span around every routed operation, LLM call, chat turn, channel
delivery and event publish/delivery, and slices may open their own with ``span(...)``. Without
one, ``span(...)`` returns a shared no-op and the host pays one attribute check per request.

The context is the W3C ``traceparent`` of the current span (``00-<trace id>-<span id>-<flags>``):

- in-process it travels in the context variable ``TRACEPARENT``, which asyncio copies into every
  task, so ``ctx.call`` needs nothing more: the called operation's span is a child of the caller's;
- ``SliceRequest.traceparent`` carries it across a process boundary (the control API reads the
  ``traceparent`` header into it; a routed request holds its own operation's span context);
- ``Event.traceparent`` carries it from ``publish`` to the subscriber, which runs on another task.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from contextvars import ContextVar, Token
from types import TracebackType
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from refactorbot.models import SliceRequest, SliceResponse

#: What a span attribute may hold (OpenTelemetry's primitive attribute values).
AttributeValue = str | bool | int | float | list[str] | list[int] | list[float] | list[bool]
#: A span's kind, as OpenTelemetry names them.
SpanKind = Literal["internal", "server", "client", "producer", "consumer"]

#: The W3C ``traceparent`` of the span running in this context, ``None`` outside any span.
TRACEPARENT: ContextVar[str | None] = ContextVar("refactorbot_traceparent", default=None)

_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-[^\s]*)?$")


class TraceParent(tuple[str, str, int]):
    """A parsed ``traceparent``: ``(trace_id, span_id, flags)``, ids in lower-case hex."""

    __slots__ = ()

    @property
    def trace_id(self) -> str:
        """Return the 32-digit trace id."""
        return self[0]

    @property
    def span_id(self) -> str:
        """Return the 16-digit id of the parent span."""
        return self[1]

    @property
    def sampled(self) -> bool:
        """Return whether the caller recorded its span (flag ``01``)."""
        return bool(self[2] & 1)


def parse_traceparent(value: str | None) -> TraceParent | None:
    """Return ``value`` parsed, or ``None`` when it is absent or not a valid W3C ``traceparent``.

    Version ``00`` must be exactly four fields; a later version may append fields (ignored);
    version ``ff`` and all-zero ids are invalid (W3C Trace Context, section 3.2).
    """
    if not value or len(value) > 512:
        return None
    match = _TRACEPARENT.match(value.strip())
    if match is None:
        return None
    version, trace_id, span_id, flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest) or trace_id == "0" * 32 or span_id == "0" * 16:
        return None
    return TraceParent((trace_id, span_id, int(flags, 16)))


def format_traceparent(trace_id: str, span_id: str, sampled: bool = True) -> str:
    """Return the version-00 ``traceparent`` of a span."""
    return f"00-{trace_id}-{span_id}-{'01' if sampled else '00'}"


def current_traceparent() -> str | None:
    """Return the ``traceparent`` of the span running in this context, or ``None``."""
    return TRACEPARENT.get()


def current_ids() -> tuple[str, str] | None:
    """Return ``(trace_id, span_id)`` of the current span (for log lines), or ``None``."""
    value = TRACEPARENT.get()
    if value is None:
        return None
    return value[3:35], value[36:52]


class Span(Protocol):
    """An open span, as the host and slices use it."""

    @property
    def traceparent(self) -> str:
        """Return this span's ``traceparent`` (what its children name as parent)."""
        ...

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        """Set one attribute (OpenTelemetry semantic-convention names where one exists)."""
        ...

    def set_error(self, error_type: str, message: str | None = None) -> None:
        """Mark the span failed: ``error.type`` and the status description (one line)."""
        ...


class SpanScope(Protocol):
    """What ``Tracer.span`` returns: entering makes the span current, leaving ends it."""

    def __enter__(self) -> Span: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None: ...


class Tracer(Protocol):
    """What ``provide_tracer`` returns."""

    def span(
        self,
        name: str,
        *,
        kind: SpanKind = "internal",
        attributes: Mapping[str, AttributeValue] | None = None,
        parent: str | None = None,
    ) -> SpanScope:
        """Return a scope for a new span named ``name``.

        Its parent is ``parent`` (a ``traceparent``, e.g. from a request or an event) when that is
        valid, else the current span (``TRACEPARENT``), else none (a new trace). While the scope is
        entered, ``TRACEPARENT`` holds the new span's context; an exception leaving it is recorded
        on the span (``error.type``: the exception's class) and propagates.
        """
        ...

    def shutdown(self) -> None:
        """Export what is buffered and release resources (called by the host as it stops, off the loop)."""
        ...


class OperationSpan(Protocol):
    """The span of one routed operation, as the host holds it (see ``operation_span``)."""

    @property
    def traceparent(self) -> str:
        """Return this span's ``traceparent``."""
        ...

    def end(self, response: SliceResponse) -> None:
        """Record the operation's outcome: ``refactorbot.success`` and, failed, ``error.type``."""
        ...


class OperationScope(Protocol):
    """What ``operation_span`` returns: entering opens the operation's span, leaving ends it."""

    def __enter__(self) -> OperationSpan: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None: ...


class _NoopSpan:
    __slots__ = ()
    traceparent = ""

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        """Ignore the attribute."""

    def set_error(self, error_type: str, message: str | None = None) -> None:
        """Ignore the error."""

    def end(self, response: SliceResponse) -> None:
        """Ignore the outcome."""

    def __enter__(self) -> _NoopSpan:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


#: A span that is not there: tracing is off, or the operation has no span of its own (an untraced
#: slice, or an operation that follows the unrecorded trace already current). Shared by all of them.
NOOP_SPAN = _NoopSpan()


class _UnrecordedTrace(_NoopSpan):
    """What a tracer's ``operation_span`` returns for a new trace it does not record: see ``UNRECORDED_TRACE``."""

    __slots__ = ()


#: What a tracer's ``operation_span`` returns for an operation that starts a new trace nothing
#: records, shared by all of them so that a flood of such operations allocates nothing: the tracer
#: has set ``request.traceparent`` to the new trace's (flag ``00``), and the host makes it current
#: (``TRACEPARENT``) while the operation runs. Entered directly it does nothing; the scope that
#: ``operation_span(request)`` returns for it makes the trace current.
UNRECORDED_TRACE = _UnrecordedTrace()


class _Current:
    """The scope of an operation whose trace is not recorded: its ``traceparent`` current while entered."""

    __slots__ = ("_token", "traceparent")

    def __init__(self, traceparent: str) -> None:
        self.traceparent = traceparent
        self._token: Token[str | None] | None = None

    def __enter__(self) -> _Current:
        self._token = TRACEPARENT.set(self.traceparent)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            TRACEPARENT.reset(self._token)
            self._token = None

    def end(self, response: SliceResponse) -> None:
        """Ignore the outcome."""


class _Operation:
    """The span of a routed operation for a tracer without ``operation_span``: ``span(...)`` with its attributes."""

    __slots__ = ("_request", "_scope", "_span")

    def __init__(self, tracer: Tracer, request: SliceRequest) -> None:
        attributes: dict[str, AttributeValue] = {
            "refactorbot.slice": request.slice_id,
            "refactorbot.operation": request.operation,
            "refactorbot.request_id": request.request_id,
        }
        if request.caller is not None:
            attributes["refactorbot.caller"] = request.caller
        self._request = request
        self._scope = tracer.span(request.target, attributes=attributes, parent=request.traceparent)
        self._span: Span = NOOP_SPAN

    @property
    def traceparent(self) -> str:
        return self._span.traceparent

    def __enter__(self) -> _Operation:
        self._span = span = self._scope.__enter__()
        if span.traceparent:
            self._request.traceparent = span.traceparent
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        return self._scope.__exit__(exc_type, exc, tb)

    def end(self, response: SliceResponse) -> None:
        span = self._span
        span.set_attribute("refactorbot.success", response.success)
        if not response.success:
            error_type = response.error_type.value if response.error_type else "operation_error"
            span.set_error(error_type, response.error_message)


#: Tracers of the hosts running in this process, newest last: the newest is the one in use. Hosts
#: may stop in any order (two in one test, say), so each removes its own rather than restoring
#: whatever it replaced.
_installed: list[Tracer] = []
#: ``operation_span`` of the tracer in use (kept with ``_installed``), ``None`` when tracing is off.
_operation: Callable[[SliceRequest], OperationScope] | None = None


def _in_use_changed() -> None:
    global _operation
    if not _installed:
        _operation = None
        return
    current = _installed[-1]
    fast = getattr(current, "operation_span", None)
    _operation = fast if callable(fast) else (lambda request: _Operation(current, request))


def tracer() -> Tracer | None:
    """Return the tracer installed in this process, or ``None`` (tracing off)."""
    return _installed[-1] if _installed else None


def install(new: Tracer | None) -> Tracer | None:
    """Make ``new`` this process's only tracer (``None``: tracing off); return the one in use before."""
    previous = tracer()
    _installed.clear()
    if new is not None:
        _installed.append(new)
    _in_use_changed()
    return previous


def push(new: Tracer) -> None:
    """Put ``new`` in use on top of the tracers installed (a host does this as it starts)."""
    _installed.append(new)
    _in_use_changed()


def remove(old: Tracer) -> None:
    """Take ``old`` out (a host does this as it stops); the newest of the others is in use again."""
    for index in range(len(_installed) - 1, -1, -1):
        if _installed[index] is old:
            del _installed[index]
            _in_use_changed()
            return


def span(
    name: str,
    *,
    kind: SpanKind = "internal",
    attributes: Mapping[str, AttributeValue] | None = None,
    parent: str | None = None,
) -> SpanScope:
    """Return a scope for a span of the installed tracer, or a no-op one when tracing is off.

    ``with span("execute_tool search", attributes={...}) as s: ...; s.set_attribute(...)``.
    """
    current = _installed[-1] if _installed else None
    if current is None:
        return NOOP_SPAN
    return current.span(name, kind=kind, attributes=attributes, parent=parent)


def operation_span(request: SliceRequest) -> OperationScope:
    """Return the scope of ``request``'s operation span (the host opens one around every routed request).

    Entering it opens the span ``<slice>.<operation>``, a child of ``request.traceparent`` when that
    is valid, else of the current span, makes it current, and sets ``request.traceparent`` to it;
    ``end(response)`` records the outcome before the scope is left. A tracer may implement
    ``operation_span(request)`` itself, with that behaviour, to record operations more cheaply than
    through ``span(...)`` (``refactorbot-otel`` does); otherwise ``span(...)`` is used. A no-op
    when tracing is off.

    A tracer's ``operation_span`` may also return one of two shared scopes, which cost an operation
    nothing more: ``NOOP_SPAN`` when the operation has no span of its own (its ``request.traceparent``
    set to the context it runs in, if any), and ``UNRECORDED_TRACE`` when the operation starts a
    trace that is not recorded (see there). The host's router recognizes both and enters no scope;
    for ``UNRECORDED_TRACE`` this function returns a scope that makes ``request.traceparent`` current.
    """
    make = _operation
    if make is None:
        return NOOP_SPAN
    scope = make(request)
    if scope is UNRECORDED_TRACE and request.traceparent is not None:
        return _Current(request.traceparent)
    return scope
