"""Observability end to end: one chat turn with a tool call is one trace (span store and OTLP)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from refactorbot import IncomingMessage, tracing
from refactorbot.chat import MasterChat
from refactorbot.testing import ModelServer, Reply, host_running, loopback_config
from refactorbot.testing._loopback import LoopbackHTTPServer

PLUGINS = [
    "refactorbot_slice_session.plugin",
    "refactorbot_slice_memory.plugin",
    "refactorbot_slice_tools.plugin",
    "refactorbot_slice_agent.plugin",
    "refactorbot_tools_files.plugin",
    "refactorbot.testing.loopback",
    "refactorbot_otel.plugin",
]


class Collector(LoopbackHTTPServer):
    """An OTLP/HTTP trace collector on loopback, decoding each ExportTraceServiceRequest."""

    def __init__(self) -> None:
        super().__init__()
        self.spans: list[Any] = []
        self.lock = threading.Lock()

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
            ExportTraceServiceResponse,
        )

        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                assert self.path == "/v1/traces" and self.headers["Content-Type"] == "application/x-protobuf"
                request = ExportTraceServiceRequest.FromString(body)
                with collector.lock:
                    for resource_spans in request.resource_spans:
                        for scope in resource_spans.scope_spans:
                            collector.spans.extend(scope.spans)
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


def otlp_attributes(span: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for a in span.attributes:
        kind = a.value.WhichOneof("value")
        out[a.key] = (
            getattr(a.value, kind) if kind != "array_value" else [v.string_value for v in a.value.array_value.values]
        )
    return out


@pytest.mark.asyncio
async def test_one_chat_turn_with_a_tool_call_is_one_trace(tmp_path: Path, collector: Collector) -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector.port}"}
    with ModelServer() as server:
        model = loopback_config(server)["llm"]["model"]
        config = {
            "core": {"health_interval": 3600},
            "plugins": {"otel": {"exporter": "both"}},
            **loopback_config(server),
        }
        server.script(
            Reply.tool_call("files_write", {"path": "plan.txt", "content": "ship"}, usage=(40, 12), cost=0.0021),
            Reply.text("Saved.", usage=(60, 3), cost=0.0007),
        )
        async with host_running(tmp_path, PLUGINS, config=config, env=env) as host:
            reply = await MasterChat(host).process_message(
                IncomingMessage(channel="test", chat_id="c1", sender_id="alice", text="save the plan")
            )
            assert reply.text == "Saved." and reply.metadata["tool_calls"] == ["files_write"]
            listed = await host.call("traces.recent", name_contains="chat_turn")
            assert listed.success and listed.data["stored"], listed.error_message
            (turn,) = listed.data["traces"]
            detail = (await host.call("traces.trace", trace_id=turn["trace_id"])).data
        assert tracing.tracer() is None

    spans = detail["spans"]
    by_id = {s["span_id"]: s for s in spans}
    roots = [s for s in spans if s["parent_id"] is None]
    assert [r["name"] for r in roots] == ["chat_turn test"]  # one root: the whole turn is one trace
    root = roots[0]
    assert root["attributes"]["gen_ai.conversation.id"] == reply.metadata["session_id"]
    assert root["attributes"]["refactorbot.turn.tool_calls"] == ["files_write"]

    def named(name: str) -> list[dict[str, Any]]:
        return [s for s in spans if s["name"] == name]

    def parent(span: dict[str, Any]) -> dict[str, Any]:
        return by_id[span["parent_id"]]

    (agent,) = named("agent.run")
    assert parent(agent) is root
    assert parent(named("session.begin_turn")[0]) is root
    llm = named(f"chat {model}")
    assert len(llm) == 2 and all(parent(s) is agent for s in llm)
    first = llm[0]["attributes"]
    assert first["gen_ai.operation.name"] == "chat"
    assert first["gen_ai.request.model"] == model
    assert first["gen_ai.usage.input_tokens"] == 40 and first["gen_ai.usage.output_tokens"] == 12
    assert first["refactorbot.llm.cost_usd"] == pytest.approx(0.0021)
    assert first["refactorbot.slice"] == "agent"
    (execute,) = named("tools.execute")
    assert parent(execute) is agent and execute["attributes"]["refactorbot.caller"] == "agent"
    (tool,) = named("execute_tool files_write")
    assert parent(tool) is execute
    assert tool["attributes"]["gen_ai.operation.name"] == "execute_tool"
    assert tool["attributes"]["gen_ai.tool.name"] == "files_write"
    assert tool["attributes"]["refactorbot.tool.ok"] is True
    # children start after, and end before, their parents
    for span in spans:
        if span["parent_id"] is not None:
            up = parent(span)
            assert up["offset_ms"] <= span["offset_ms"]
            assert span["offset_ms"] + span["duration_ms"] <= up["offset_ms"] + up["duration_ms"] + 0.001

    # The same trace went to the collector over OTLP (flushed as the host stopped).
    exported = [s for s in collector.spans if s.trace_id.hex() == turn["trace_id"]]
    assert sorted(s.name for s in exported) == sorted(s["name"] for s in spans)
    otlp = {s.span_id.hex(): s for s in exported}
    otlp_tool = next(s for s in exported if s.name == "execute_tool files_write")
    assert otlp[otlp_tool.parent_span_id.hex()].name == "tools.execute"
    otlp_llm = next(s for s in exported if s.name.startswith("chat ") and s.name != "chat_turn test")
    assert otlp_attributes(otlp_llm)["gen_ai.usage.input_tokens"] == 40
    assert otlp[otlp_llm.parent_span_id.hex()].name == "agent.run"
