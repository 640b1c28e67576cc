"""Tracing on a real host: spans in the SQLite store, parentage across ctx.call and the bus, OTLP export."""

from __future__ import annotations

import gzip
import subprocess
import sys
import threading
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
import refactorbot_otel.plugin
from pydantic import BaseModel
from refactorbot import AtomicSlice, Event, SliceRequest, SliceResponse, operation, subscribe, tracing
from refactorbot.testing import host_running, plugin_of
from refactorbot.testing._loopback import LoopbackHTTPServer

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = f"00-{TRACE}-00f067aa0ba902b7-01"


class Text(BaseModel):
    text: str = ""


class FrontSlice(AtomicSlice):
    """Calls the back slice and publishes an event: the trace spans both and the bus."""

    slice_id = "front"
    uses_database = False

    @operation
    async def ask(self, params: Text) -> Text:
        """Ask the back slice, then announce it."""
        answer = await self.ctx.call("back.echo", text=params.text)
        await self.ctx.publish("front.asked", {"text": params.text})
        return Text(text=answer["text"])

    @operation
    async def say(self, params: Text) -> Text:
        """Log a warning, inside the operation's span."""
        self.log.warning("saying %s", params.text)
        return Text(text=tracing.current_traceparent() or "")

    @operation
    async def fail(self, params: Text) -> Text:
        """Fail on purpose."""
        raise ValueError("no good")


class BackSlice(AtomicSlice):
    """Echoes; records the events it receives."""

    slice_id = "back"
    uses_database = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seen: list[Event] = []
        self.got = threading.Event()

    @operation
    async def echo(self, params: Text) -> Text:
        """Echo."""
        return params

    @subscribe("front.*")
    async def on_front(self, event: Event) -> None:
        """Remember the event."""
        self.seen.append(event)
        self.got.set()


SAMPLES = plugin_of(slices=[FrontSlice, BackSlice], name="samples")


async def trace_of(host: Any, root: str) -> dict[str, Any]:
    listed = await host.call("traces.recent", name_contains=root)
    assert listed.success, listed.error_message
    assert listed.data["stored"] is True
    trace_id = listed.data["traces"][0]["trace_id"]
    detail = await host.call("traces.trace", trace_id=trace_id)
    assert detail.success, detail.error_message
    data: dict[str, Any] = detail.data
    return data


async def wait_for(event: threading.Event) -> None:
    import asyncio

    await asyncio.to_thread(event.wait, 10)
    assert event.is_set()


@pytest.mark.asyncio
async def test_operation_call_and_event_are_one_trace_in_the_store(tmp_path: Path) -> None:
    async with host_running(tmp_path, [refactorbot_otel.plugin, SAMPLES]) as host:
        assert tracing.tracer() is not None
        response = await host.call("front.ask", text="hi")
        assert response.success
        back = host.instance("back")
        assert isinstance(back, BackSlice)
        await wait_for(back.got)
        assert back.seen[0].traceparent is not None
        await host.call("front.fail")
        await host.bus.stop()  # delivered and its span ended: the bus drains on stop
        await host.bus.start()

        detail = await trace_of(host, "front.ask")
        spans = {s["name"]: s for s in detail["spans"]}
        assert set(spans) == {"front.ask", "back.echo", "publish front.asked", "process front.asked"}
        root = spans["front.ask"]
        assert root["parent_id"] is None and root["depth"] == 0
        assert spans["back.echo"]["parent_id"] == root["span_id"]
        assert spans["publish front.asked"]["parent_id"] == root["span_id"]
        assert spans["process front.asked"]["parent_id"] == spans["publish front.asked"]["span_id"]
        assert spans["back.echo"]["attributes"]["refactorbot.caller"] == "front"
        assert root["attributes"]["refactorbot.success"] is True
        assert spans["process front.asked"]["kind"] == "consumer"
        assert back.seen[0].traceparent.split("-")[2] == spans["publish front.asked"]["span_id"]

        failed = await trace_of(host, "front.fail")
        (span,) = failed["spans"]
        assert span["status"] == "error"
        assert span["attributes"]["error.type"] == "operation_error"
        assert "ValueError: no good" in span["status_message"]
        errors = await host.call("traces.recent", errors_only=True)
        assert [t["root_name"] for t in errors.data["traces"]] == ["front.fail"]
    assert tracing.tracer() is None  # the host removed its tracer as it stopped
    assert (tmp_path / "slices" / "traces.db").stat().st_mode & 0o077 == 0


@pytest.mark.asyncio
async def test_a_request_from_another_process_continues_its_trace(tmp_path: Path) -> None:
    async with host_running(tmp_path, [refactorbot_otel.plugin, SAMPLES]) as host:
        request = SliceRequest(slice_id="back", operation="echo", payload={"text": "x"}, traceparent=PARENT)
        assert (await host.route(request)).success
        assert request.traceparent is not None and request.traceparent.split("-")[1] == TRACE
        bad = SliceRequest(slice_id="back", operation="echo", traceparent="00-" + "0" * 32 + "-00f067aa0ba902b7-01")
        assert (await host.route(bad)).success  # an invalid parent starts a new trace
        assert bad.traceparent is not None and bad.traceparent.split("-")[1] != "0" * 32

        detail = await host.call("traces.trace", trace_id=TRACE)
        (span,) = detail.data["spans"]
        assert span["parent_id"] == "00f067aa0ba902b7" and span["depth"] == 0
        listed = await host.call("traces.recent")
        assert TRACE in {t["trace_id"] for t in listed.data["traces"]}
        unknown = await host.call("traces.trace", trace_id="f" * 32)
        assert not unknown.success and "no trace" in (unknown.error_message or "")
        refused = await host.call("traces.trace", trace_id="XYZ")
        assert refused.error_type is not None and refused.error_type.value == "invalid_payload"


@pytest.mark.asyncio
async def test_retention_keeps_the_newest_spans(tmp_path: Path) -> None:
    config = {
        "slices": {"traces": {"max_spans": 1000, "prune_batch": 100, "prune_interval": 3600}},
        "plugins": {"otel": {"max_traces_per_second": 0}},  # every one of the 800 traces recorded
    }
    async with host_running(tmp_path, [refactorbot_otel.plugin, SAMPLES], config=config) as host:
        for i in range(600):  # 2 spans each (front.ask -> back.echo) + publish + process
            assert (await host.call("back.echo", text=str(i))).success
        for _ in range(200):
            assert (await host.call("front.ask", text="x")).success
        await host.bus.stop()
        await host.bus.start()
        pruned = await host.call("traces.prune")
        assert pruned.success, pruned.error_message
        # (the retention loop's first pass, at start, may already have taken a few)
        assert pruned.data["remaining_spans"] == 1000
        listed = await host.call("traces.recent", limit=500)
        roots = [t["root_name"] for t in listed.data["traces"]]
        assert roots.count("front.ask") == 200 and roots.count("back.echo") == 200
        assert all(t["spans"] == 4 for t in listed.data["traces"] if t["root_name"] == "front.ask")


class Collector(LoopbackHTTPServer):
    """An OTLP/HTTP collector on loopback: decodes each ExportTraceServiceRequest it is sent."""

    def __init__(self) -> None:
        super().__init__()
        self.spans: list[Any] = []
        self.resources: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.arrived = threading.Event()

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
            ExportTraceServiceResponse,
        )

        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                encoding = self.headers.get("Content-Encoding", "")
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                if self.path != "/v1/traces" or self.headers["Content-Type"] != "application/x-protobuf":
                    self.send_response(404)
                    self.end_headers()
                    return
                request = ExportTraceServiceRequest.FromString(body)
                collector.headers.append(dict(self.headers))
                for resource_spans in request.resource_spans:
                    collector.resources.append(
                        {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                    )
                    for scope in resource_spans.scope_spans:
                        collector.spans.extend(scope.spans)
                collector.arrived.set()  # before answering: the exporter returns once it has the answer
                out = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args: Any) -> None:
                pass

        return Handler


@pytest.fixture
def collector() -> Iterator[Collector]:
    with Collector() as server:
        yield server


@pytest.mark.asyncio
async def test_spans_go_to_the_otlp_collector_when_the_endpoint_is_set(tmp_path: Path, collector: Collector) -> None:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector.port}",
        "OTEL_SERVICE_NAME": "bot-under-test",
        "OTEL_EXPORTER_OTLP_HEADERS": "x-scope=tests",
    }
    async with host_running(tmp_path, [refactorbot_otel.plugin, SAMPLES], env=env) as host:
        assert (await host.call("front.ask", text="hi")).success
        listed = await host.call("traces.recent")
        assert listed.data == {"stored": False, "traces": []}  # OTLP only: nothing in the store
    assert collector.arrived.is_set()  # the host's stop flushed the exporter
    by_name = {s.name: s for s in collector.spans}
    assert {"front.ask", "back.echo", "publish front.asked"} <= set(by_name)
    assert by_name["back.echo"].parent_span_id == by_name["front.ask"].span_id
    assert by_name["back.echo"].trace_id == by_name["front.ask"].trace_id
    attributes = {a.key: a.value for a in by_name["back.echo"].attributes}
    assert attributes["refactorbot.slice"].string_value == "back"
    assert collector.resources[0]["service.name"] == "bot-under-test"
    assert collector.headers[0]["x-scope"] == "tests"


@pytest.mark.asyncio
async def test_disabled_tracing_installs_nothing(tmp_path: Path) -> None:
    async with host_running(tmp_path, [refactorbot_otel.plugin, SAMPLES], env={"OTEL_SDK_DISABLED": "true"}) as host:
        assert tracing.tracer() is None
        assert (await host.call("front.ask", text="hi")).success
        assert (await host.call("traces.recent")).data == {"stored": False, "traces": []}
    config = {"plugins": {"otel": {"enabled": False}}}
    async with host_running(tmp_path / "off", [refactorbot_otel.plugin, SAMPLES], config=config):
        assert tracing.tracer() is None


def test_the_plugin_imports_no_opentelemetry_code() -> None:
    code = (
        "import sys, refactorbot_otel.plugin, refactorbot_otel.slice, refactorbot_otel.pages;"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_traceparent_parsing_follows_w3c() -> None:
    assert tracing.parse_traceparent(PARENT) == (TRACE, "00f067aa0ba902b7", 1)
    assert tracing.parse_traceparent(PARENT.upper()) is None  # lower-case hex only
    assert tracing.parse_traceparent("ff" + PARENT[2:]) is None
    assert tracing.parse_traceparent(PARENT + "-extra") is None  # version 00 has four fields
    assert tracing.parse_traceparent("01" + PARENT[2:] + "-extra") is not None  # a later version may add
    assert tracing.parse_traceparent(f"00-{TRACE}-0000000000000000-01") is None
    assert tracing.parse_traceparent("") is None and tracing.parse_traceparent(None) is None
    assert tracing.format_traceparent(TRACE, "00f067aa0ba902b7") == PARENT


@pytest.mark.asyncio
async def test_json_log_lines_carry_the_trace_and_span_ids(tmp_path: Path) -> None:
    import io
    import json
    import logging

    stream = io.StringIO()
    console = logging.StreamHandler(stream)
    logging.getLogger().addHandler(console)
    try:
        config = {"core": {"log_format": "json"}}
        async with host_running(tmp_path, [refactorbot_otel.plugin, SAMPLES], config=config) as host:
            said = await host.call("front.say", text="hello")
            assert (
                isinstance(console.formatter, logging.Formatter) and type(console.formatter).__name__ == "JsonFormatter"
            )
        assert console.formatter is None  # put back as the host stopped
    finally:
        logging.getLogger().removeHandler(console)
    lines = [json.loads(line) for line in stream.getvalue().splitlines() if "saying" in line]
    assert len(lines) == 1
    (line,) = lines
    _, trace_id, span_id, _ = said.data["text"].split("-")
    assert line["message"] == "saying hello" and line["level"] == "WARNING" and line["slice_id"] == "front"
    assert (line["trace_id"], line["span_id"]) == (trace_id, span_id)


def test_a_full_queue_drops_new_spans_and_counts_them_without_waiting(caplog: pytest.LogCaptureFixture) -> None:
    from refactorbot_otel.tracer import RecordingTracer, SpanRecord

    exported: list[str] = []
    inside = threading.Event()
    release = threading.Event()

    def slow_sink(batch: Any) -> None:  # a collector that hangs: the exporting thread waits, not the spans
        inside.set()
        release.wait(10)
        exported.extend(s.name for s in batch)

    caplog.set_level("WARNING", logger="refactorbot.otel")  # the exporting thread may be the one to log
    tracer = RecordingTracer([("slow", slow_sink)], max_queue=64)
    try:
        with tracer.span("first"):
            pass
        flusher = threading.Thread(target=tracer.force_flush, args=(10_000,))
        flusher.start()
        assert inside.wait(10)
        for i in range(100):  # the sink is busy: 64 fit in the queue, 36 are dropped at once
            with tracer.span(f"s{i}") as span:
                assert isinstance(span, SpanRecord)
        assert tracer.dropped == 36
        release.set()
        flusher.join()
        assert tracer.force_flush(10_000)
        assert exported == ["first", *(f"s{i}" for i in range(64))]
        assert "36 span(s) dropped" in caplog.text
    finally:
        release.set()
        tracer.shutdown()


def test_a_failing_sink_loses_its_batch_and_the_next_batch_goes_through(caplog: pytest.LogCaptureFixture) -> None:
    from refactorbot_otel.tracer import RecordingTracer

    calls: list[list[str]] = []

    def sink(batch: Any) -> None:
        calls.append([s.name for s in batch])
        if len(calls) == 1:
            raise OSError("collector unreachable")

    caplog.set_level("ERROR", logger="refactorbot.otel")
    tracer = RecordingTracer([("flaky", sink)])
    try:
        with tracer.span("lost"):
            pass
        assert tracer.force_flush()
        assert "1 span(s) not exported to flaky: OSError: collector unreachable" in caplog.text
        with tracer.span("kept"):
            pass
    finally:
        tracer.shutdown()  # exports what is queued
    assert calls == [["lost"], ["kept"]]


@pytest.mark.asyncio
async def test_a_sample_ratio_of_zero_propagates_unsampled_context_and_stores_nothing(tmp_path: Path) -> None:
    config = {"plugins": {"otel": {"sample_ratio": 0.0}}}
    async with host_running(tmp_path, [refactorbot_otel.plugin, SAMPLES], config=config) as host:
        said = await host.call("front.say", text="x")
        assert said.success
        version, trace_id, span_id, flags = said.data["text"].split("-")
        assert (version, flags, len(trace_id), len(span_id)) == ("00", "00", 32, 16)
        request = SliceRequest(slice_id="back", operation="echo", payload={"text": "x"}, traceparent=PARENT)
        assert (await host.route(request)).success  # a sampled caller is followed (parent-based)
        listed = await host.call("traces.recent")
        assert [t["trace_id"] for t in listed.data["traces"]] == [TRACE]


def test_max_traces_per_second_admits_a_bucket_of_new_traces_and_refills_with_time() -> None:
    from refactorbot_otel.tracer import RecordingTracer

    now = [100.0]
    recorded: list[list[str]] = []
    tracer = RecordingTracer(
        [("list", lambda batch: recorded.append([s.name for s in batch]))],
        max_traces_per_second=3,
        clock=lambda: now[0],
    )
    try:
        for i in range(10):  # one second's burst: 3 recorded, 7 not
            with tracer.span(f"root {i}") as span:
                with tracer.span(f"child {i}") as child:  # a child follows its root's decision
                    assert child.traceparent.split("-")[1] == span.traceparent.split("-")[1]
                    assert child.traceparent.endswith("-01") == span.traceparent.endswith("-01")
        assert tracer.over_limit == 7
        now[0] += 0.5  # half a second refills 1.5 tokens: one more trace
        for i in range(10, 13):
            with tracer.span(f"root {i}"):
                pass
        assert tracer.force_flush()
    finally:
        tracer.shutdown()
    names = [name for batch in recorded for name in batch]
    assert sorted(names) == sorted(["child 0", "root 0", "child 1", "root 1", "child 2", "root 2", "root 10"])
    assert tracer.over_limit == 9


@pytest.mark.asyncio
async def test_operations_past_the_limit_carry_an_unrecorded_traceparent_to_their_callees(tmp_path: Path) -> None:
    config = {"plugins": {"otel": {"max_traces_per_second": 1}}}
    async with host_running(tmp_path, [refactorbot_otel.plugin, SAMPLES], config=config) as host:
        first = await host.call("front.say", text="a")  # takes the bucket's one token
        said = [await host.call("front.say", text=str(i)) for i in range(5)]
        unrecorded = [s.data["text"] for s in said if s.data["text"].endswith("-00")]
        assert first.data["text"].endswith("-01") and unrecorded  # at most one refilled in the meantime
        for traceparent in unrecorded:  # a valid W3C traceparent, a trace of its own, flag 00
            parsed = tracing.parse_traceparent(traceparent)
            assert parsed is not None and not parsed.sampled
        assert len({t.split("-")[1] for t in unrecorded}) == len(unrecorded)
        request = SliceRequest(slice_id="back", operation="echo", payload={"text": "x"}, traceparent=unrecorded[0])
        assert (await host.route(request)).success
        assert request.traceparent == unrecorded[0]  # followed, not recorded: nothing new to name
        tracing.tracer().force_flush()  # type: ignore[union-attr]
        listed = await host.call("traces.recent", limit=50)
        recorded = {t["trace_id"] for t in listed.data["traces"]}
        assert first.data["text"].split("-")[1] in recorded
        assert not recorded & {t.split("-")[1] for t in unrecorded}


def test_the_limit_must_not_be_negative() -> None:
    from refactorbot_otel.config import OtelConfig

    with pytest.raises(ValueError, match="max_traces_per_second"):
        OtelConfig(max_traces_per_second=-1)


def test_an_operation_past_the_limit_gets_a_shared_scope_and_its_callees_write_no_context() -> None:
    import contextvars

    from refactorbot_otel.tracer import RecordingTracer

    now = [50.0]
    recorded: list[str] = []
    tracer = RecordingTracer(
        [("list", lambda batch: recorded.extend(s.name for s in batch))],
        max_traces_per_second=1,
        clock=lambda: now[0],
    )

    def flood() -> list[str]:
        seen: list[str] = []
        for i in range(3):
            root = SliceRequest(slice_id="front", operation="say")
            if i == 0:  # the bucket's one token: recorded, an object of its own
                scope = tracer.operation_span(root)
                assert scope is not tracing.UNRECORDED_TRACE and scope is not tracing.NOOP_SPAN
                with scope as span:
                    span.end(SliceResponse(request_id=root.request_id, success=True))
                continue
            assert tracer.operation_span(root) is tracing.UNRECORDED_TRACE  # shared: no object
            assert tracing.TRACEPARENT.get() is None and root.traceparent is not None  # the host makes it current
            root.traceparent = None
            with tracing.operation_span(root):  # what the host's router does, as a scope
                current = tracing.TRACEPARENT.get()
                assert current is not None and current == root.traceparent and current.endswith("-00")
                callee = SliceRequest(slice_id="back", operation="echo", caller="front")
                assert tracer.operation_span(callee) is tracing.NOOP_SPAN  # follows the trace, no span
                assert callee.traceparent is current and tracing.TRACEPARENT.get() is current  # nothing written
                with tracer.span("execute_tool search") as tool:  # a span of the unrecorded trace: shared too
                    assert tool.traceparent == current and tracing.TRACEPARENT.get() is current
                assert tracer.span("another") is tracer.span("one more")
            assert tracing.TRACEPARENT.get() is None  # leaving it ends the trace in this context
            seen.append(current)
        return seen

    tracing.push(tracer)
    try:
        seen = contextvars.Context().run(flood)
        assert len({t.split("-")[1] for t in seen}) == 2  # a trace id each
        assert tracer.over_limit == 4
        assert tracer.force_flush()
    finally:
        tracing.remove(tracer)
        tracer.shutdown()
    assert recorded == ["front.say"]


def test_a_limit_below_one_a_second_records_the_first_trace_then_one_per_interval() -> None:
    from refactorbot_otel.tracer import RecordingTracer

    now = [10.0]
    tracer = RecordingTracer([("none", lambda batch: None)], max_traces_per_second=0.5, clock=lambda: now[0])
    try:
        assert [tracer.sample_root() for _ in range(3)] == [True, False, False]
        now[0] += 1.9
        assert not tracer.sample_root()
        now[0] += 0.1  # two seconds after the first
        assert [tracer.sample_root() for _ in range(2)] == [True, False]
    finally:
        tracer.shutdown()


def test_traces_left_out_by_the_sample_ratio_do_not_count_against_the_limit() -> None:
    from refactorbot_otel.tracer import RecordingTracer

    now = [10.0]
    tracer = RecordingTracer(
        [("none", lambda batch: None)], sample_ratio=0.5, max_traces_per_second=2, clock=lambda: now[0]
    )
    try:
        decisions = [tracer.sample_root() for _ in range(400)]
        assert decisions.count(True) == 2  # the ratio admits about 200; the limit two of those
        assert 120 <= tracer.over_limit <= 280  # only those the ratio admitted reach the limit
    finally:
        tracer.shutdown()


def test_unrecorded_traceparents_are_unique_across_blocks_and_threads() -> None:
    """Unrecorded ids come 256 to a block; blocks started by several threads at once never collide."""
    from refactorbot_otel import tracer

    made: list[list[str]] = [[] for _ in range(4)]
    start = threading.Barrier(len(made))

    def make(out: list[str]) -> None:
        start.wait()
        out.extend(tracer._unsampled_root() for _ in range(2000))

    threads = [threading.Thread(target=make, args=(out,)) for out in made]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [value for out in made for value in out]
    assert len(every) == 8000
    assert len({tracing.parse_traceparent(value)[0] for value in every}) == 8000  # one trace id each
    for value in every:
        parsed = tracing.parse_traceparent(value)
        assert parsed is not None and not parsed[2] & 1  # well-formed, flagged not recorded
