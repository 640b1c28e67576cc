"""The span the host opens around every routed operation, for a tracer with and without ``operation_span``."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest
from refactorbot import AtomicSlice, Model, SliceRequest, SliceResponse, operation, tracing
from refactorbot.testing import host_running, plugin_of

_ids = itertools.count(1)


class Recorded:
    """A span of ``MinimalTracer``: name, parent, attributes, status; current while entered."""

    def __init__(self, tracer: MinimalTracer, name: str, attributes: Mapping[str, Any] | None, parent: str | None):
        self.tracer = tracer
        self.name = name
        self.attributes = dict(attributes or {})
        self.parent = parent or tracing.TRACEPARENT.get()
        self.error: tuple[str, str | None] | None = None
        trace = self.parent.split("-")[1] if self.parent else f"{next(_ids):032x}"
        self.traceparent = f"00-{trace}-{next(_ids):016x}-01"

    def set_attribute(self, key: str, value: Any) -> None:
        self.attributes[key] = value

    def set_error(self, error_type: str, message: str | None = None) -> None:
        self.error = (error_type, message)

    def __enter__(self) -> Recorded:
        self.token = tracing.TRACEPARENT.set(self.traceparent)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        tracing.TRACEPARENT.reset(self.token)
        self.tracer.ended.append(self)


class MinimalTracer:
    """A tracer with only the required methods: ``span`` and ``shutdown``."""

    def __init__(self) -> None:
        self.ended: list[Any] = []

    def span(
        self,
        name: str,
        *,
        kind: str = "internal",
        attributes: Mapping[str, Any] | None = None,
        parent: str | None = None,
    ) -> Recorded:
        return Recorded(self, name, attributes, parent)

    def shutdown(self) -> None:
        pass


class Outcome:
    """What ``FastTracer.operation_span`` records: the request and its response."""

    def __init__(self, tracer: FastTracer, request: SliceRequest) -> None:
        self.tracer = tracer
        self.request = request
        self.response: SliceResponse | None = None
        self.traceparent = f"00-{next(_ids):032x}-{next(_ids):016x}-01"

    def end(self, response: SliceResponse) -> None:
        self.response = response

    def __enter__(self) -> Outcome:
        self.request.traceparent = self.traceparent
        self.token = tracing.TRACEPARENT.set(self.traceparent)
        return self

    def __exit__(self, *exc: object) -> None:
        tracing.TRACEPARENT.reset(self.token)
        self.tracer.operations.append(self)


class FastTracer(MinimalTracer):
    """A tracer that records routed operations through ``operation_span``."""

    def __init__(self) -> None:
        super().__init__()
        self.operations: list[Outcome] = []

    def operation_span(self, request: SliceRequest) -> Outcome:
        return Outcome(self, request)


class Text(Model):
    text: str = ""


class Front(AtomicSlice):
    slice_id = "front"
    uses_database = False
    requires = ("back",)

    @operation
    async def ask(self, params: Text) -> Text:
        """Ask the back slice."""
        return Text(text=(await self.ctx.call("back.echo", text=params.text))["text"])

    @operation
    async def fail(self) -> None:
        """Fail."""
        raise ValueError("no")


class Back(AtomicSlice):
    slice_id = "back"
    uses_database = False

    @operation
    async def echo(self, params: Text) -> Text:
        """Echo, with the traceparent current while it runs."""
        return Text(text=tracing.current_traceparent() or "")


def tracer_plugin(tracer: Any) -> Any:
    def provide_tracer(config: Any, env: Any) -> Any:
        return tracer

    return plugin_of(slices=[Front, Back], hooks=[provide_tracer], name="tracer")


@pytest.mark.asyncio
async def test_a_tracer_with_only_span_gets_one_span_per_operation_with_its_attributes(tmp_path: Path) -> None:
    tracer = MinimalTracer()
    async with host_running(tmp_path, [tracer_plugin(tracer)]) as host:
        asked = await host.call("front.ask", text="x")
        assert asked.success
        failed = await host.call("front.fail")
        assert not failed.success
    by_name = {span.name: span for span in tracer.ended}
    front, back, fail = by_name["front.ask"], by_name["back.echo"], by_name["front.fail"]
    assert front.parent is None and back.parent == front.traceparent  # ctx.call: a child of its caller
    assert asked.data["text"] == back.traceparent  # the operation runs with its own span current
    assert back.attributes == {
        "refactorbot.slice": "back",
        "refactorbot.operation": "echo",
        "refactorbot.request_id": back.attributes["refactorbot.request_id"],
        "refactorbot.caller": "front",
        "refactorbot.success": True,
    }
    assert fail.attributes["refactorbot.success"] is False
    assert fail.error is not None and fail.error[0] == "operation_error" and "ValueError" in (fail.error[1] or "")


@pytest.mark.asyncio
async def test_a_tracer_with_operation_span_records_routed_operations_through_it(tmp_path: Path) -> None:
    tracer = FastTracer()
    async with host_running(tmp_path, [tracer_plugin(tracer)]) as host:
        request = SliceRequest(slice_id="front", operation="ask", payload={"text": "x"})
        response = await host.route(request)
        assert response.success
        streamed = host.astream("back.echo", text="y")
        assert [chunk async for chunk in streamed] == []
    assert tracer.ended == []  # span(...) was not used for operations
    names = [(o.request.target, o.response is not None and o.response.success) for o in tracer.operations]
    assert names == [("back.echo", True), ("front.ask", True), ("back.echo", True)]
    assert request.traceparent == tracer.operations[1].traceparent  # what a worker and after_operation see
    assert response.data["text"] == tracer.operations[0].traceparent


@pytest.mark.asyncio
async def test_without_a_tracer_no_span_is_opened_and_nothing_is_current(tmp_path: Path) -> None:
    async with host_running(tmp_path, [plugin_of(slices=[Front, Back])]) as host:
        asked = await host.call("front.ask", text="x")
    assert asked.success and asked.data["text"] == ""
    assert tracing.operation_span(SliceRequest(slice_id="a", operation="b")) is tracing.NOOP_SPAN
