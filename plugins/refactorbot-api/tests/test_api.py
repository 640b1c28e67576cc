"""The control API against a real host, served on loopback inside the host's event loop."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import stat
import time
import tomllib
from pathlib import Path

import api_sample
import httpx
import pytest
import refactorbot_api.plugin
from api_sample import CONFIG, Served
from refactorbot.client import ServerClient
from refactorbot.testing import host_running

pytestmark = pytest.mark.asyncio


# -- start-up, token, discovery -------------------------------------------------------------


async def test_one_shot_hosts_start_no_server(tmp_path: Path) -> None:
    # `refactorbot call` / `slices` run a host that is not serving: no port, no server.json
    async with host_running(tmp_path, [api_sample, refactorbot_api.plugin], config=CONFIG, serving=False) as host:
        assert host.has_slice("sample")
        assert not (tmp_path / "server.json").exists()
        assert not (tmp_path / "api-token").exists()


async def test_token_owner_only_reused_and_server_file_lifecycle(tmp_path: Path) -> None:
    async with host_running(tmp_path, [api_sample, refactorbot_api.plugin], config=CONFIG) as host:
        token_file = tmp_path / "api-token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        token = token_file.read_text().strip()
        assert len(token) >= 40
        info = json.loads((tmp_path / "server.json").read_text())
        assert info["pid"] == os.getpid()
        assert info["url"].startswith("http://127.0.0.1:")
        assert not info["url"].endswith(":0")
        async with httpx.AsyncClient() as client:
            health = (await client.get(info["url"] + "/health")).json()
        assert health == {"status": "ok", "version": health["version"], "slices_running": 1, "slices_total": 1}
        assert host.has_slice("sample")
    assert not (tmp_path / "server.json").exists()
    async with host_running(tmp_path, [api_sample, refactorbot_api.plugin], config=CONFIG):
        assert (tmp_path / "api-token").read_text().strip() == token


async def test_core_server_client_discovers_and_calls(served: Served) -> None:
    # The CLI's client is synchronous: run it in a thread so the host's loop keeps serving.
    client = await asyncio.to_thread(ServerClient.discover, served.home)
    assert client is not None
    rows = await asyncio.to_thread(client.request, "GET", "/slices")
    assert [r["slice_id"] for r in rows] == ["sample"]
    response = await asyncio.to_thread(client.call, "sample", "add", {"title": "from the CLI"})
    assert response["success"] is True
    assert response["data"]["title"] == "from the CLI"


async def test_disabled_api_does_not_listen(tmp_path: Path) -> None:
    config = {**CONFIG, "plugins": {"api": {"enabled": False}}}
    async with host_running(tmp_path, [api_sample, refactorbot_api.plugin], config=config) as host:
        assert host.has_slice("sample")
        assert not (tmp_path / "server.json").exists()


async def test_port_in_use_is_reported_and_host_stays_up(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        config = {**CONFIG, "plugins": {"api": {"port": port}}}
        with caplog.at_level(logging.ERROR, logger="refactorbot"):
            async with host_running(tmp_path / "h", [api_sample, refactorbot_api.plugin], config=config) as host:
                assert host.has_slice("sample")
                assert not (tmp_path / "h" / "server.json").exists()
    reason = f"API: port {port} on 127.0.0.1 is already in use (set [plugins.api] port or RB_API_PORT)"
    assert f"startup hook of refactorbot_api.plugin failed: {reason}" in caplog.messages


# -- authentication -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer"}],
    ids=["missing", "wrong", "other-scheme", "empty"],
)
async def test_every_endpoint_but_health_needs_the_token(served: Served, headers: dict[str, str]) -> None:
    spec = (await served.client.get("/openapi.json")).json()
    async with httpx.AsyncClient(base_url=served.url, headers=headers) as anonymous:
        for path, methods in spec["paths"].items():
            if path == "/health" or path.startswith("/hooks/"):
                continue
            concrete = path.replace("{slice_id}", "sample").replace("{operation}", "add").replace("{section}", "core")
            for method in methods:
                response = await anonymous.request(method.upper(), concrete, json={})
                assert response.status_code == 401, (method, path, response.text)
                assert response.headers["www-authenticate"] == "Bearer"
                assert "api-token" in response.json()["detail"]
        assert (await anonymous.get("/health")).status_code == 200
        assert (await anonymous.get("/openapi.json")).status_code == 401
        # Even a body the API cannot parse is refused for the missing token first.
        bad = await anonymous.post("/slices/sample/operations/add", content=b"{not json")
        assert bad.status_code == 401


async def test_openapi_document_is_complete(served: Served) -> None:
    spec = (await served.client.get("/openapi.json")).json()
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            responses = operation["responses"]
            assert "200" in responses, (method, path)
            media = {"/chat/stream": "application/x-ndjson", "/metrics/prometheus": "text/plain"}.get(
                path, "application/json"
            )
            assert responses["200"]["content"][media]["schema"], (method, path)
            if path != "/health" and not path.startswith("/hooks/"):
                assert "401" in responses, (method, path)
                assert operation.get("security") == [{"HTTPBearer": []}], (method, path)
            if "422" in responses:
                ref = responses["422"]["content"]["application/json"]["schema"]["$ref"]
                assert ref.endswith("/ValidationErrorBody"), (method, path)
    assert "HTTPValidationError" not in spec["components"]["schemas"]


# -- plugins and slices ----------------------------------------------------------------------


class BrokenPlugin:
    REFACTORBOT_API = 1

    @refactorbot_api.plugin.hookimpl
    def register_slices(self, register: object) -> None:
        raise RuntimeError("cannot register")


class BrokenRoutes:
    REFACTORBOT_API = 1

    @refactorbot_api.plugin.hookimpl
    def register_routes(self, router: object) -> None:
        raise RuntimeError("no routes today")


class Undeclared:
    """Declares no REFACTORBOT_API: loaded, with a warning."""

    @refactorbot_api.plugin.hookimpl
    def register_dashboard_pages(self, register: object) -> None:
        pass


async def test_plugins_lists_failed_ones(tmp_path: Path) -> None:
    plugins = [api_sample, refactorbot_api.plugin, BrokenPlugin(), BrokenRoutes(), Undeclared()]
    async with host_running(tmp_path, plugins, config=CONFIG):
        token = (tmp_path / "api-token").read_text().strip()
        url = json.loads((tmp_path / "server.json").read_text())["url"]
        async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}) as client:
            records = {r["name"]: r for r in (await client.get("/plugins")).json()}
            assert (await client.get("/plugins/sample/count")).json() == {"count": 42}
    assert records["api_sample"]["status"] == "ok"
    assert "register_routes" in records["api_sample"]["hooks"]
    assert records["BrokenPlugin"]["status"] == "failed"
    assert "cannot register" in records["BrokenPlugin"]["error"]
    # A plugin whose routes fail is reported; the API and the other plugins' routes still serve.
    assert records["BrokenRoutes"]["status"] == "failed"
    assert records["BrokenRoutes"]["error"] == "register_routes: RuntimeError: no routes today"
    assert (records["Undeclared"]["status"], records["Undeclared"]["warning"]) == (
        "ok",
        "declares no REFACTORBOT_API; assumed compatible with API 1",
    )
    assert records["api_sample"]["warning"] is None


async def test_slices_and_detail(served: Served) -> None:
    rows = (await served.client.get("/slices")).json()
    assert len(rows) == 1
    row = rows[0]
    assert row["slice_id"] == "sample" and row["status"] == "running" and row["health"] == "healthy"
    assert row["heartbeat_age_s"] >= 0 and row["count"] == 0 and row["error_rate"] == 0
    detail = (await served.client.get("/slices/sample")).json()
    ops = {op["name"]: op for op in detail["capabilities"]["operations"]}
    assert set(ops) == {"add", "list", "fail"}
    assert ops["add"]["input_schema"]["required"] == ["title"]
    missing = await served.client.get("/slices/nope")
    assert missing.status_code == 404
    assert "unknown slice 'nope'" in missing.json()["detail"]


async def test_stop_start_restart(served: Served) -> None:
    stopped = (await served.client.post("/slices/sample/stop")).json()
    assert stopped["status"] == "stopped"
    refused = (await served.client.post("/slices/sample/operations/add", json={"title": "x"})).json()
    assert refused["success"] is False and refused["error_type"] == "slice_unavailable"
    conflict = await served.client.post("/slices/sample/diagnostics")
    assert conflict.status_code == 409 and "is stopped" in conflict.json()["detail"]
    started = (await served.client.post("/slices/sample/start")).json()
    assert started["status"] == "running"
    restarted = (await served.client.post("/slices/sample/restart")).json()
    assert restarted["status"] == "running" and restarted["restarts"] == 1
    assert served.host.has_slice("sample")
    assert (await served.client.post("/slices/nope/restart")).status_code == 404


async def test_run_operations(served: Served) -> None:
    ok = await served.client.post("/slices/sample/operations/add", json={"title": "hello", "body": "world"})
    assert ok.status_code == 200
    assert ok.json()["success"] is True and ok.json()["data"] == {"id": 1, "title": "hello", "body": "world"}
    listed = (await served.client.post("/slices/sample/operations/list", json={"limit": 5})).json()
    assert listed["data"] == [{"id": 1, "title": "hello", "body": "world"}]
    no_body = (await served.client.post("/slices/sample/operations/list")).json()
    assert no_body["success"] is True

    bad = await served.client.post("/slices/sample/operations/add", json={"title": ""})
    assert bad.status_code == 422
    assert bad.json()["detail"] == "invalid payload for sample.add: title: String should have at least 1 character"
    extra = await served.client.post("/slices/sample/operations/add", json={"title": "x", "colour": "red"})
    assert extra.status_code == 422 and "colour" in extra.json()["detail"]
    not_object = await served.client.post("/slices/sample/operations/add", json=[1, 2])
    assert not_object.status_code == 422 and isinstance(not_object.json()["detail"], str)

    unknown = await served.client.post("/slices/sample/operations/nope", json={})
    assert unknown.status_code == 404 and "available: add, fail, list" in unknown.json()["detail"]
    assert (await served.client.post("/slices/nope/operations/add", json={})).status_code == 404

    failed = (await served.client.post("/slices/sample/operations/fail")).json()
    assert failed["success"] is False and failed["error_type"] == "operation_error"
    assert "this operation always fails" in failed["error_message"]


async def test_diagnostics_and_self_improve(served: Served) -> None:
    report = (await served.client.post("/slices/sample/diagnostics")).json()
    assert report["passed"] is True and {c["name"] for c in report["checks"]} >= {"health", "schemas"}
    plan = (
        await served.client.post("/slices/sample/self-improve", json={"source": "user", "summary": "be faster"})
    ).json()
    assert plan["slice_id"] == "sample"
    assert any(p["rationale"] == "be faster" for p in plan["proposals"])
    default = await served.client.post("/slices/sample/self-improve")
    assert default.status_code == 200 and default.json()["notes"] == "all checks passed"


async def test_metrics_and_operations_over_time(served: Served) -> None:
    for i in range(5):
        await served.client.post("/slices/sample/operations/add", json={"title": f"n{i}"})
    await served.client.post("/slices/sample/operations/fail")
    metrics = (await served.client.get("/metrics")).json()
    add = metrics["operations"]["sample.add"]
    assert add["count"] == 5 and add["errors"] == 0 and add["p50_ms"] > 0 and add["p99_ms"] >= add["p50_ms"]
    assert metrics["operations"]["sample.fail"]["errors"] == 1
    assert metrics["process"]["rss_mb"] > 0 and metrics["process"]["pid"] == os.getpid()
    assert metrics["resources"]["sample"]["max_concurrency"] == 32
    buckets = (await served.client.get("/metrics/operations", params={"minutes": 5})).json()
    assert sum(b["count"] for b in buckets) == 6 and sum(b["errors"] for b in buckets) == 1
    assert all(b["slice_id"] == "sample" and b["minute"] % 60 == 0 for b in buckets)
    other = (await served.client.get("/metrics/operations", params={"slice_id": "other"})).json()
    assert other == []
    assert (await served.client.get("/metrics/operations", params={"minutes": 0})).status_code == 422


# -- logs ------------------------------------------------------------------------------------


async def _insert_logs(served: Served, rows: list[tuple[float, int, str, str | None, str, str]]) -> None:
    async with (await served.host.master_db()).transaction() as conn:
        await conn.executemany(
            "INSERT INTO logs (ts, level, level_name, slice_id, logger, message) VALUES (?, ?, ?, ?, ?, ?)", rows
        )


async def test_logs_from_the_host_are_served(served: Served) -> None:
    logging.getLogger("refactorbot.slice.sample").warning("disk is %d%% full", 91)
    page = (await served.client.get("/logs", params={"slice_id": "sample"})).json()
    assert page["items"][0]["message"] == "disk is 91% full"
    assert page["items"][0]["level_name"] == "WARNING"


async def test_logs_filter_and_keyset_paging(served: Served) -> None:
    base = time.time() - 1000
    levels = [(10, "DEBUG"), (20, "INFO"), (30, "WARNING"), (40, "ERROR")]
    rows = []
    for i in range(250):
        level, name = levels[i % 4]
        rows.append((base + i, level, name, "sample" if i % 2 else "other", "refactorbot.test", f"row {i}"))
    await _insert_logs(served, rows)

    seen: list[int] = []
    before = None
    pages = 0
    while True:
        params = {"limit": 60, "slice_id": "sample"}
        if before is not None:
            params["before_id"] = before
        page = (await served.client.get("/logs", params=params)).json()
        seen += [int(item["message"].split()[1]) for item in page["items"]]
        assert all(item["slice_id"] == "sample" for item in page["items"])
        pages += 1
        before = page["next_before_id"]
        if before is None:
            break
    assert pages == 3
    assert seen == [i for i in reversed(range(250)) if i % 2]

    errors = (await served.client.get("/logs", params={"level": "ERROR", "limit": 1000})).json()["items"]
    assert {item["level_name"] for item in errors} == {"ERROR"} and len(errors) == 62
    warnings = (await served.client.get("/logs", params={"level": "30", "limit": 1000})).json()["items"]
    assert len(warnings) == 62 + 62
    window = (await served.client.get("/logs", params={"since": base + 10, "until": base + 20})).json()["items"]
    assert [item["message"] for item in window] == [f"row {i}" for i in range(19, 9, -1)]

    bad_level = await served.client.get("/logs", params={"level": "LOUD"})
    assert bad_level.status_code == 422 and "level" in bad_level.json()["detail"]
    typo = await served.client.get("/logs", params={"slice": "sample"})
    assert typo.status_code == 422 and "unknown query parameter" in typo.json()["detail"]
    too_many = await served.client.get("/logs", params={"limit": 5000})
    assert too_many.status_code == 422


# -- settings --------------------------------------------------------------------------------


async def test_settings_masked_and_updated_atomically(served: Served) -> None:
    config_file = served.home / "refactorbot.toml"
    # A secret-named key holds the name of an environment variable (literal secrets: test_settings_security.py).
    put = await served.client.put("/settings/slices.sample", json={"max_notes": 5, "api_key": "SAMPLE_API_KEY"})
    assert put.status_code == 200, put.text
    body = put.json()
    assert body["sections"]["slices"]["sample"] == {"max_notes": 5, "api_key": "***"}
    assert body["restart_required"] is True
    assert "SAMPLE_API_KEY" not in put.text
    assert tomllib.loads(config_file.read_text())["slices"]["sample"]["api_key"] == "SAMPLE_API_KEY"
    assert stat.S_IMODE(config_file.stat().st_mode) == 0o600

    # Sending the mask back keeps the stored value; other values change.
    again = await served.client.put("/settings/slices.sample", json={"max_notes": 7, "api_key": "***"})
    assert again.status_code == 200
    saved = tomllib.loads(config_file.read_text())
    assert saved["slices"]["sample"] == {"max_notes": 7, "api_key": "SAMPLE_API_KEY"}
    assert saved["plugins"]["api"] == {"port": 0}

    view = (await served.client.get("/settings")).json()
    assert view["exists"] is True and view["config_file"] == str(config_file)
    assert view["sections"]["slices"]["sample"]["api_key"] == "***"

    before = config_file.read_text()
    for section, values, message in [
        ("slices.sample", {"max_notes": 0}, "max_notes: Input should be greater than or equal to 1"),
        ("slices.sample", {"unknown": 1}, "unknown: Extra inputs are not permitted"),
        ("slices.sample", {"resources": {"timeout": -1}}, "[slices.sample.resources]: timeout"),
        ("core", {"health_interval": "often"}, "health_interval"),
        ("plugins.api", {"port": 70000}, "port"),
        ("core", {"log_level": None}, "null has no TOML form"),
    ]:
        refused = await served.client.put(f"/settings/{section}", json=values)
        assert refused.status_code == 422, (section, values, refused.text)
        assert message in refused.json()["detail"], refused.json()
    assert (await served.client.put("/settings/bogus", json={})).status_code == 422
    assert config_file.read_text() == before
    assert not [p for p in served.home.iterdir() if p.name.endswith(".tmp")]


# -- chat and plugin routes ------------------------------------------------------------------


async def test_chat_without_agent_is_503(served: Served) -> None:
    response = await served.client.post("/chat", json={"text": "hello"})
    assert response.status_code == 503
    assert response.json()["detail"].startswith("chat is unavailable")
    assert (await served.client.post("/chat", json={"text": ""})).status_code == 422


async def test_plugin_routes_and_webhooks(served: Served) -> None:
    assert (await served.client.get("/plugins/sample/count")).json() == {"count": 42}
    async with httpx.AsyncClient(base_url=served.url) as anonymous:
        assert (await anonymous.get("/plugins/sample/count")).status_code == 401
        hook = await anonymous.post("/hooks/sample", json={"b": 1, "a": 2})
        assert hook.status_code == 200 and hook.json() == {"received": ["a", "b"]}


async def test_keep_alive_requests_are_not_delayed(served: Served) -> None:
    # Accepted connections get TCP_NODELAY: a keep-alive client never waits for delayed ACKs (~40 ms).
    # The server runs in this process, so the test reads the option on the server's side of the
    # client's connection (the latency itself is measured by tests/bench/bench_api.py).
    import socket

    assert (await served.client.get("/slices")).status_code == 200
    connections = refactorbot_api.plugin._servers[served.host]._server.server_state.connections
    assert connections  # the client's keep-alive connection
    for connection in connections:
        accepted = connection.transport.get_extra_info("socket")
        assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
