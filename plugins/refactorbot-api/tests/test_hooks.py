"""``/hooks/...`` routes that take the raw request, served by ``HookPath`` ahead of FastAPI, on a real server."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import api_sample
import httpx
import pytest
import pytest_asyncio
import refactorbot_api.plugin
from api_sample import CONFIG, Served
from fastapi import APIRouter, Depends, Request
from fastapi import Path as PathParameter
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel
from refactorbot import AtomicSlice, hookimpl, operation, tracing
from refactorbot.testing import host_running
from refactorbot_api.hooks import HookPath, is_plain

pytestmark = pytest.mark.asyncio

LIMIT = 4096
PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest_asyncio.fixture
async def small(tmp_path: Path) -> AsyncIterator[Served]:
    """A served host whose API takes bodies of at most ``LIMIT`` bytes."""
    config = {**CONFIG, "plugins": {"api": {"port": 0, "max_body_bytes": LIMIT}}}
    async with host_running(tmp_path, [api_sample, refactorbot_api.plugin], config=config) as host:
        url = json.loads((tmp_path / "server.json").read_text())["url"]
        async with httpx.AsyncClient(base_url=url, timeout=20) as client:
            yield Served(host, tmp_path, client)


def hook_path(served: Served) -> HookPath:
    """Return the ``HookPath`` layer of the served API (behind the declared-length check)."""
    app = refactorbot_api.plugin._servers[served.host]._server.config.app
    assert isinstance(app.app, HookPath)
    return app.app


async def test_plain_routes_are_served_ahead_of_fastapi_with_the_request_intact(small: Served) -> None:
    assert [route.path for *_, route in hook_path(small).routes] == ["/plain/{name}"]  # /sample has a body model
    answer = await small.client.post(
        "/hooks/plain/abc?x=1&y=two", content=b"0123456789", headers={"X-Signature": "sha256=00"}
    )
    assert answer.status_code == 200 and answer.headers["x-hook"] == "plain"
    assert answer.json() == {
        "name": "abc",
        "bytes": 10,
        "path": "/hooks/plain/abc",
        "query": {"x": "1", "y": "two"},
        "signature": "sha256=00",
        "host": small.home.name,
    }
    # Everything else under /hooks goes through FastAPI as before: body models, 422, 404, 405.
    assert (await small.client.post("/hooks/sample", json={"b": 1})).json() == {"received": ["b"]}
    assert (await small.client.post("/hooks/sample", content=b"[")).status_code == 422
    assert (await small.client.post("/hooks/nothing-here")).status_code == 404
    assert (await small.client.get("/hooks/plain/abc")).status_code == 405
    assert (await small.client.post("/hooks/plain/a/b")).status_code == 404


async def test_exceptions_get_the_apis_answers(small: Served, caplog: pytest.LogCaptureFixture) -> None:
    forbidden = await small.client.post("/hooks/plain/forbidden", content=b"{}")
    assert forbidden.status_code == 403 and forbidden.json() == {"detail": "no entry"}
    assert forbidden.headers["x-why"] == "forbidden"
    with caplog.at_level(logging.ERROR, logger="refactorbot.api"):
        broken = await small.client.post("/hooks/plain/broken", content=b"{}")
    assert broken.status_code == 500
    assert broken.json() == {"detail": "internal error: RuntimeError: the plain hook broke"}
    assert "API POST /hooks/plain/broken failed: RuntimeError: the plain hook broke" in caplog.text
    assert (await small.client.post("/hooks/plain/fine", content=b"{}")).status_code == 200  # still serving


async def _raw_post(url: str, path: str, head: str, body: bytes) -> tuple[int, bytes]:
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    writer.write(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{head}\r\n".encode() + body)
    await writer.drain()
    status = int((await asyncio.wait_for(reader.readline(), 20)).split()[1])
    headers = {}
    while (line := await asyncio.wait_for(reader.readline(), 20)) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    answer = await asyncio.wait_for(reader.readexactly(int(headers.get("content-length", "0"))), 20)
    writer.close()
    return status, answer


async def test_the_body_limit_holds_declared_or_chunked(small: Served) -> None:
    detail = {"detail": f"request body larger than {LIMIT} bytes ([plugins.api] max_body_bytes)"}
    declared = await small.client.post("/hooks/plain/big", content=b"x" * (LIMIT + 1))
    assert declared.status_code == 413 and declared.json() == detail
    chunk = b"x" * 1000
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(5)) + b"0\r\n\r\n"
    status, body = await _raw_post(small.url, "/hooks/plain/big", "Transfer-Encoding: chunked\r\n", chunks)
    assert status == 413 and json.loads(body) == detail
    exact = b"".join(b"%x\r\n%s\r\n" % (1024, b"y" * 1024) for _ in range(4)) + b"0\r\n\r\n"
    status, body = await _raw_post(small.url, "/hooks/plain/fits", "Transfer-Encoding: chunked\r\n", exact)
    assert status == 200 and json.loads(body)["bytes"] == LIMIT


class RecordedSpan:
    def __init__(self, name: str, kind: str, attributes: Mapping[str, Any] | None, parent: str | None) -> None:
        self.name, self.kind, self.parent = name, kind, parent
        self.attributes = dict(attributes or {})
        self.error: str | None = None
        self.ended = False

    @property
    def traceparent(self) -> str:
        return "00-4bf92f3577b34da6a3ce929d0e0e4736-" + format(id(self) % 2**63 or 1, "016x") + "-01"

    def set_attribute(self, key: str, value: Any) -> None:
        self.attributes[key] = value

    def set_error(self, error_type: str, message: str | None = None) -> None:
        self.error = error_type

    def __enter__(self) -> RecordedSpan:
        return self

    def __exit__(self, *exc: object) -> None:
        self.ended = True


class RecordingTracer:
    """A ``Tracer`` that keeps its spans in a list."""

    def __init__(self) -> None:
        self.spans: list[RecordedSpan] = []

    def span(
        self,
        name: str,
        *,
        kind: Any = "internal",
        attributes: Mapping[str, Any] | None = None,
        parent: str | None = None,
    ) -> RecordedSpan:
        self.spans.append(RecordedSpan(name, kind, attributes, parent))
        return self.spans[-1]

    def shutdown(self) -> None:
        return None


@contextmanager
def recording() -> Iterator[RecordingTracer]:
    tracer = RecordingTracer()
    tracing.push(tracer)
    try:
        yield tracer
    finally:
        tracing.remove(tracer)


async def test_each_webhook_request_is_a_server_span_under_its_traceparent(small: Served) -> None:
    with recording() as tracer:
        ok = await small.client.post("/hooks/plain/traced", content=b"{}", headers={"traceparent": PARENT})
        broken = await small.client.post("/hooks/plain/broken", content=b"{}", headers={"traceparent": "junk"})
    assert ok.status_code == 200 and broken.status_code == 500
    first, second = tracer.spans
    assert (first.name, first.kind, first.parent, first.ended) == ("POST /hooks/plain/traced", "server", PARENT, True)
    assert first.attributes["http.response.status_code"] == 200 and first.error is None
    assert (second.name, second.parent, second.error) == ("POST /hooks/plain/broken", None, "500")
    assert second.attributes["http.response.status_code"] == 500


class Strict(BaseModel):
    n: int | None


class StrictSlice(AtomicSlice):
    """Batches rows into a NOT NULL column: a null makes its batch fail."""

    slice_id = "strict"

    async def initialize(self) -> None:
        await super().initialize()
        assert self.db is not None
        await self.db.execute("CREATE TABLE IF NOT EXISTS rows (n INTEGER NOT NULL)")
        self.writer = self.db.batch_writer("INSERT INTO rows (n) VALUES (?)")

    @operation
    async def put(self, params: Strict) -> None:
        """Queue one row."""
        self.writer.add((params.n,))


class StrictHooks:
    """A slice whose rows may fail to commit, and a plain webhook that queues one."""

    REFACTORBOT_API = 1

    @hookimpl
    def register_slices(self, register: Any) -> None:
        register(StrictSlice)

    @hookimpl
    def register_routes(self, router: Any) -> None:
        async def put(value: str, request: Request) -> Response:
            n = None if value == "null" else int(value)
            await request.app.state.host.call("strict.put", n=n)
            return JSONResponse({"queued": n})

        router.webhooks.add_api_route("/strict/{value}", put, methods=["POST"])

        async def data(value: str, request: Request):  # type: ignore[no-untyped-def]  # no response model
            return {"value": value, "method": request.method}

        router.webhooks.add_api_route("/data/{value}", data, methods=["PUT"], status_code=201)

        async def stream(value: str, request: Request) -> Response:
            async def chunks() -> AsyncIterator[bytes]:  # each chunk queues its row after the answer started
                for n in (int(value), int(value) + 1):
                    await request.app.state.host.call("strict.put", n=n)
                    yield f"{n}\n".encode()

            return StreamingResponse(chunks(), media_type="text/plain")

        router.webhooks.add_api_route("/stream/{value}", stream, methods=["POST"])


async def test_the_answer_waits_for_the_rows_the_webhook_queued(tmp_path: Path) -> None:
    async with host_running(tmp_path, [StrictHooks(), refactorbot_api.plugin], config=CONFIG) as host:
        url = json.loads((tmp_path / "server.json").read_text())["url"]
        served = Served(host, tmp_path, httpx.AsyncClient(base_url=url, timeout=10))
        assert [route.path for *_, route in hook_path(served).routes] == [
            "/strict/{value}",
            "/data/{value}",
            "/stream/{value}",
        ]
        async with served.client as client:
            data = await client.put("/hooks/data/x")  # data returned: JSON with the route's status code
            assert data.status_code == 201 and data.json() == {"value": "x", "method": "PUT"}
            fine = await client.post("/hooks/strict/1")
            assert fine.status_code == 200 and fine.json() == {"queued": 1}
            failed = await client.post("/hooks/strict/null")
            assert failed.status_code == 500
            assert failed.json()["detail"].startswith(
                "internal error: the request ran, but its audit-log rows were not written: strict.db: 1 rows not written"
            )


async def test_each_chunk_of_a_streamed_answer_waits_for_the_rows_queued_before_it(tmp_path: Path) -> None:
    async with host_running(tmp_path, [StrictHooks(), refactorbot_api.plugin], config=CONFIG) as host:
        url = json.loads((tmp_path / "server.json").read_text())["url"]
        db_path = host.instance("strict").db.path
        seen: list[tuple[str, list[int]]] = []
        async with (
            httpx.AsyncClient(base_url=url, timeout=10) as client,
            client.stream("POST", "/hooks/stream/7") as answer,
        ):
            assert answer.status_code == 200
            async for line in answer.aiter_lines():
                with sqlite3.connect(db_path) as conn:  # what is on disk when the chunk arrives
                    seen.append((line, [row[0] for row in conn.execute("SELECT n FROM rows ORDER BY n")]))
        # a chunk's own row, and the rows before it, are on disk when it arrives (later ones may be too)
        assert [line for line, _ in seen] == ["7", "8"]
        assert 7 in seen[0][1] and {7, 8} <= set(seen[1][1])


async def test_only_routes_of_path_parameters_and_the_request_are_plain() -> None:
    router = APIRouter()

    async def raw(channel: str, request: Request) -> Response:
        return Response()

    async def numbered(n: int, request: Request) -> Response:
        return Response()

    async def queried(channel: str, request: Request, page: int = 1) -> Response:
        return Response()

    async def modelled(channel: str, payload: dict[str, Any]) -> Response:
        return Response()

    def blocking(channel: str, request: Request) -> Response:
        return Response()

    router.add_api_route("/raw/{channel}", raw, methods=["POST"])
    router.add_api_route("/numbered/{n}", numbered, methods=["POST"])
    router.add_api_route("/queried/{channel}", queried, methods=["POST"])
    router.add_api_route("/modelled/{channel}", modelled, methods=["POST"])
    router.add_api_route("/blocking/{channel}", blocking, methods=["POST"])
    router.add_api_route("/guarded/{channel}", raw, methods=["POST"], dependencies=[Depends(lambda: None)])

    async def constrained(channel: Annotated[str, PathParameter(max_length=8)], request: Request) -> Response:
        return Response()

    router.add_api_route("/constrained/{channel}", constrained, methods=["POST"])
    plain = {route.path for route in router.routes if is_plain(route)}  # type: ignore[arg-type]
    assert plain == {"/raw/{channel}"}
