import asyncio
import sqlite3

import pytest
import sample_plugins as sp
from refactorbot import ErrorType, LLMCall, LLMCallRefused, hookimpl
from refactorbot.errors import GatewayError
from refactorbot.testing import build_host, host_running

FAST = {"core": {"health_interval": 3600, "stop_timeout": 0.5, "drain_timeout": 1.0}}


async def _eventually(predicate, timeout=30.0):
    """Poll ``predicate`` (sync or async) until it is true or ``timeout`` passes; return its last value."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value or asyncio.get_running_loop().time() > deadline:
            return value
        await asyncio.sleep(0.02)


@pytest.mark.asyncio
async def test_route_validates_executes_logs_and_measures(tmp_path):
    async with host_running(tmp_path, [sp.echo_plugin], config=FAST) as host:
        ok = await host.call("echo.echo", text="ab", times=2)
        assert ok.success and ok.data == {"text": "abab"}
        bad = await host.call("echo.echo", times="many")
        assert bad.error_type is ErrorType.INVALID_PAYLOAD
        assert "text: Field required" in bad.error_message and "times" in bad.error_message
        unknown = await host.call("echo.nope")
        assert unknown.error_type is ErrorType.UNKNOWN_OPERATION and "available: " in unknown.error_message
        missing = await host.call("ghost.op")
        assert missing.error_type is ErrorType.SLICE_UNAVAILABLE and "unknown slice 'ghost'" in missing.error_message
        stats = host.metrics.snapshot()
        assert stats["echo.echo"]["count"] == 2 and stats["echo.echo"]["errors"] == 1
    rows = (
        sqlite3.connect(tmp_path / "master.db")
        .execute("SELECT slice_id, operation, success, error_type FROM operation_log ORDER BY id")
        .fetchall()
    )
    assert rows == [
        ("echo", "echo", 1, None),
        ("echo", "echo", 0, "invalid_payload"),
        ("echo", "nope", 0, "unknown_operation"),
        ("ghost", "op", 0, "slice_unavailable"),
    ]


@pytest.mark.asyncio
async def test_operation_that_raises_is_reported_not_raised(tmp_path):
    async with host_running(tmp_path, [sp.echo_plugin], config=FAST) as host:
        response = await host.call("echo.boom")
        assert not response.success
        assert response.error_type is ErrorType.OPERATION_ERROR
        assert response.error_message == "echo.boom raised RuntimeError: kaboom"
        assert (await host.call("echo.noop")).success  # the slice keeps serving


@pytest.mark.asyncio
async def test_failing_initialize_and_hanging_stop_do_not_take_the_host_down(tmp_path):
    host = build_host(tmp_path, [sp.echo_plugin, sp.broken_slices_plugin], config=FAST)
    await host.start()
    status = {r["slice_id"]: r for r in host.slice_status()}
    assert status["badinit"]["status"] == "failed"
    assert "cannot open the thing" in status["badinit"]["error"]
    assert status["hangstop"]["status"] == "running"
    assert (await host.call("echo.echo", text="x")).success
    failed = await host.call("badinit.noop")
    assert failed.error_type is ErrorType.SLICE_UNAVAILABLE and "cannot open the thing" in failed.error_message
    await asyncio.wait_for(host.stop(), timeout=10)
    status = {r["slice_id"]: r for r in host.slice_status()}
    assert status["hangstop"]["status"] == "failed"
    assert "stop timed out" in status["hangstop"]["error"]
    assert status["echo"]["status"] == "stopped"
    saved = dict(sqlite3.connect(tmp_path / "master.db").execute("SELECT slice_id, status FROM slice_state").fetchall())
    assert saved == {"badinit": "failed", "echo": "stopped", "hangstop": "failed"}


@pytest.mark.asyncio
async def test_events_reach_subscribers(tmp_path):
    async with host_running(tmp_path, [sp.echo_plugin], config=FAST) as host:
        assert (await host.call("echo.announce", text="hello")).success
        assert await _eventually(lambda: host.instance("echo").seen)
        assert host.instance("echo").seen == ["hello"]


@pytest.mark.asyncio
async def test_cross_slice_call_reports_missing_slice(tmp_path):
    async with host_running(tmp_path, [sp.echo_plugin], config=FAST) as host:
        response = await host.call("echo.ask", text="memory.search")
        assert response.error_type is ErrorType.SLICE_UNAVAILABLE
        assert "unknown slice 'memory'" in response.error_message
        loop = await host.call("echo.ask", text="echo.echo")
        assert loop.success and loop.data == {"text": "hi"}
    rows = (
        sqlite3.connect(tmp_path / "master.db")
        .execute("SELECT caller FROM operation_log WHERE operation = 'echo' AND slice_id = 'echo'")
        .fetchall()
    )
    assert rows == [("echo",)]


@pytest.mark.asyncio
async def test_timeout_concurrency_and_rate_limits_are_enforced(tmp_path):
    config = {
        **FAST,
        "slices": {"echo": {"resources": {"timeout": 0.2, "max_concurrency": 1, "rate_limit": 1000, "burst": 3}}},
    }
    async with host_running(tmp_path, [sp.echo_plugin], config=config) as host:
        host.instance("echo").gates["x"] = asyncio.Event()  # never set: only the timeout ends the call
        slow = await host.call("echo.slow", text="x")
        assert slow.error_type is ErrorType.TIMEOUT
        assert slow.error_message == "echo.slow timed out after 0.2s"

    # One at a time: the second call waits its turn. A synchronous before_operation hook runs in
    # the caller's task just before it asks for the slice's concurrency slot.
    second_arrived = asyncio.Event()

    class Arrivals:
        REFACTORBOT_API = 1

        @hookimpl
        def before_operation(self, request):
            if request.payload.get("text") == "b":
                second_arrived.set()

    config["slices"]["echo"]["resources"] = {"max_concurrency": 1, "timeout": 30}
    async with host_running(tmp_path / "b", [sp.echo_plugin, Arrivals()], config=config) as host:
        echo = host.instance("echo")
        echo.gates.update(a=asyncio.Event(), b=asyncio.Event())
        first = asyncio.ensure_future(host.call("echo.slow", text="a"))
        assert await echo.entered.get() == "a"
        second = asyncio.ensure_future(host.call("echo.slow", text="b"))
        await second_arrived.wait()  # the second call asks for the slot the first one holds
        for _ in range(20):  # turns of the loop (not time): a second call let in would enter now
            await asyncio.sleep(0)
        assert echo.trace == ["enter a"] and host.resources()["echo"]["in_flight"] == 1
        echo.gates["a"].set()
        echo.gates["b"].set()
        first, second = await asyncio.gather(first, second)
        assert first.success and second.success
        assert echo.trace == ["enter a", "leave a", "enter b", "leave b"]  # never both at once

    # ... and a call that cannot get the slot within the timeout is refused. No gate opens: the
    # first call holds the slot until it times out; the second, first in the queue, is refused too
    # or holds the slot a whole timeout more (which comes first depends on the Python version), so
    # the third, queued behind both, is refused however the timers fall.
    config["slices"]["echo"]["resources"] = {"max_concurrency": 1, "timeout": 0.3}
    async with host_running(tmp_path / "c", [sp.echo_plugin], config=config) as host:
        host.instance("echo").gates.update(a=asyncio.Event(), b=asyncio.Event(), c=asyncio.Event())
        first, second, third = await asyncio.gather(*(host.call("echo.slow", text=t) for t in "abc"))
        assert first.error_type is ErrorType.TIMEOUT
        assert second.error_type in (ErrorType.TIMEOUT, ErrorType.RESOURCE_LIMIT)
        assert third.error_type is ErrorType.RESOURCE_LIMIT
        assert third.error_message.startswith("slice 'echo' is busy: max_concurrency=1 reached for 0.3s")
    config["slices"]["echo"]["resources"] = {"rate_limit": 0.001, "burst": 2}
    async with host_running(tmp_path / "d", [sp.echo_plugin], config=config) as host:
        results = [await host.call("echo.noop") for _ in range(3)]
        assert [r.success for r in results] == [True, True, False]
        assert results[2].error_message == "slice 'echo' rate limit of 0.001/s exceeded; retry later"


@pytest.mark.asyncio
async def test_env_overrides_and_invalid_slice_config(tmp_path):
    host = build_host(tmp_path, [sp.echo_plugin], config=FAST, env={"RB_ECHO_START": "7"})
    await host.start()
    assert host.instance("echo").config.start == 7
    await host.stop()
    host = build_host(tmp_path / "b", [sp.echo_plugin], config=FAST, env={"RB_ECHO_START": "seven"})
    await host.start()
    row = host.slice_status()[0]
    assert row["status"] == "failed"
    assert row["error"].startswith("[slices.echo]: start: Input should be a valid integer")
    await host.stop()
    host = build_host(tmp_path / "c", [sp.echo_plugin], config=FAST, env={"RB_ECHO_ENABLED": "0"})
    await host.start()
    assert host.slice_status() == []
    await host.stop()


@pytest.mark.asyncio
async def test_supervisor_restarts_an_unhealthy_slice(tmp_path):
    config = {"core": {"health_interval": 0.05, "restart_backoff": 0.01, "stop_timeout": 0.5}}
    async with host_running(tmp_path, [sp.echo_plugin], config=config) as host:
        first = host.instance("echo")
        first.unhealthy = True
        assert await _eventually(lambda: host.instance("echo") not in (None, first))
        assert host.slice_status()[0]["restarts"] == 1
        assert (await host.call("echo.noop")).success


@pytest.mark.asyncio
async def test_shutdown_lets_in_flight_requests_finish(tmp_path):
    host = build_host(tmp_path, [sp.echo_plugin], config={"core": {**FAST["core"], "drain_timeout": 30}})
    await host.start()
    echo = host.instance("echo")
    echo.gates["late"] = asyncio.Event()
    pending = asyncio.ensure_future(host.call("echo.slow", text="late"))
    assert await echo.entered.get() == "late"  # in flight
    stopping = asyncio.ensure_future(host.stop())
    await asyncio.sleep(0)  # one turn of the loop: the stop's first step marks the host as stopping
    refused = await host.call("echo.noop")
    assert refused.error_type is ErrorType.SLICE_UNAVAILABLE and "shutting down" in refused.error_message
    assert not stopping.done()  # the stop waits for the request in flight ...
    echo.gates["late"].set()
    await stopping
    assert (await pending).success  # ... which finishes
    refused = await host.call("echo.noop")
    assert refused.error_type is ErrorType.SLICE_UNAVAILABLE and "shutting down" in refused.error_message


@pytest.mark.asyncio
async def test_control_stop_start_restart(tmp_path):
    async with host_running(tmp_path, [sp.echo_plugin], config=FAST) as host:
        await host.stop_slice("echo")
        assert (await host.call("echo.noop")).error_type is ErrorType.SLICE_UNAVAILABLE
        assert await host.start_slice("echo")
        assert await host.restart_slice("echo")
        assert host.slice_status()[0]["restarts"] == 1
        assert (await host.call("echo.noop")).success


@pytest.mark.asyncio
async def test_operation_hooks_can_refuse_and_observe(tmp_path):
    seen = []

    class Policy:
        REFACTORBOT_API = 1

        @hookimpl
        def before_operation(self, request):
            return "boom is not allowed here" if request.operation == "boom" else None

        @hookimpl
        async def after_operation(self, request, response):
            seen.append((request.target, response.success))

    async with host_running(tmp_path, [sp.echo_plugin, Policy()], config=FAST) as host:
        refused = await host.call("echo.boom")
        assert refused.error_type is ErrorType.REFUSED
        assert refused.error_message == "refused: boom is not allowed here"
        await host.call("echo.noop")
    # no wait: the stop lets running after_operation calls finish
    assert seen == [("echo.boom", False), ("echo.noop", True)]


@pytest.mark.asyncio
async def test_llm_calls_need_a_gateway_and_honour_vetoes(tmp_path):
    Gateways = sp.Gateways

    class Budget:
        REFACTORBOT_API = 1

        @hookimpl
        async def before_llm_call(self, call):
            return "budget exhausted" if call.slice_id == "poor" else None

    async with host_running(tmp_path, [], config=FAST) as host:
        with pytest.raises(GatewayError, match="no LLM gateway is installed"):
            await host.complete(LLMCall(model="m", messages=[{"role": "user", "content": "hi"}]))
    async with host_running(tmp_path / "b", [Gateways(), Budget()], config=FAST) as host:
        answer = await host.complete(LLMCall(model="m", messages=[{"role": "user", "content": "hi"}]))
        assert answer.content == "m:hi" and answer.gateway == "static"
        with pytest.raises(LLMCallRefused, match="budget exhausted"):
            await host.complete(LLMCall(model="m", slice_id="poor", messages=[{"role": "user", "content": "hi"}]))


@pytest.mark.asyncio
async def test_before_llm_call_may_reroute_the_model_and_gateway(tmp_path):
    from refactorbot import LLMGateway, LLMResponse

    def gateway(gateway_name):
        class Named(LLMGateway):
            name = gateway_name

            async def complete(self, messages, model, tools=None, **params):
                return LLMResponse(content=f"{self.name}:{model}")

            async def stream(self, messages, model, tools=None, **params):
                yield  # pragma: no cover

        return Named

    class Gateways:
        REFACTORBOT_API = 1

        @hookimpl
        def register_gateways(self, register):
            register(gateway("alpha"))
            register(gateway("beta"))

    class Router:
        REFACTORBOT_API = 1

        @hookimpl
        def before_llm_call(self, call):
            assert call.gateway == "alpha"  # what the host would pick
            if call.params.get("task") == "planning":
                call.model, call.gateway = "strong", "beta"

    async with host_running(tmp_path, [Gateways(), Router()], config=FAST) as host:
        plain = await host.complete(LLMCall(model="cheap", messages=[{"role": "user", "content": "x"}]))
        routed = await host.complete(
            LLMCall(model="cheap", messages=[{"role": "user", "content": "x"}], params={"task": "planning"})
        )
    assert (plain.content, routed.content) == ("alpha:cheap", "beta:strong")


@pytest.mark.asyncio
async def test_logs_from_slices_and_worker_threads_reach_the_unified_log(tmp_path):
    import logging

    async with host_running(tmp_path, [sp.echo_plugin], config=FAST) as host:
        slice_log = host.instance("echo").log
        slice_log.warning("from the loop")
        # the handler hands the thread's record to the loop before the thread's result comes back
        await asyncio.to_thread(slice_log.warning, "from a worker thread")
        logging.getLogger("refactorbot.other").info("not a slice")
    rows = sqlite3.connect(tmp_path / "master.db").execute("SELECT slice_id, level_name, message FROM logs").fetchall()
    assert ("echo", "WARNING", "from the loop") in rows
    assert ("echo", "WARNING", "from a worker thread") in rows
    assert (None, "INFO", "not a slice") in rows


@pytest.mark.asyncio
async def test_an_operation_that_raises_leaves_its_traceback_in_the_unified_log(tmp_path):
    async with host_running(tmp_path, [sp.echo_plugin], config=FAST) as host:
        await host.call("echo.boom")
    (message,) = (
        sqlite3.connect(tmp_path / "master.db")
        .execute("SELECT message FROM logs WHERE slice_id = 'echo' AND level_name = 'ERROR'")
        .fetchone()
    )
    assert message.startswith("echo.boom raised\nTraceback (most recent call last):")
    assert "RuntimeError: kaboom" in message


@pytest.mark.asyncio
async def test_watchdog_reports_and_marks_the_slice_or_hook_that_blocks_the_loop(tmp_path, caplog):
    config = {"core": {**FAST["core"], "loop_block_threshold": 0.2}}
    policy = sp.StallingPolicy()
    async with host_running(tmp_path, [sp.stall_plugin, sp.echo_plugin, policy], config=config) as host:
        assert (await host.call("stall.stall", seconds=0.8)).success

        def stall_error():
            return host.slice_status()[1]["error"] or ""

        assert await _eventually(lambda: stall_error().startswith("blocked the event loop for ")), stall_error()
        assert stall_error().endswith("in stall") and "sample_plugins.py:" in stall_error()
        report = next(r.getMessage() for r in caplog.records if "has been blocked" in r.getMessage())
        assert "by slice stall at sample_plugins.py:" in report
        assert "time.sleep(params.seconds)" in report  # the culprit's stack
        assert any("was blocked for" in r.getMessage() and r.slice_id == "stall" for r in caplog.records)

        async def saved():
            rows = await (await host.master_db()).fetchall("SELECT slice_id, error FROM slice_state")
            return {r["slice_id"]: r["error"] for r in rows}.get("stall") or ""

        assert (await _eventually(lambda: saved())).startswith("blocked the event loop for ")

        assert (await host.call("stall.checked")).success
        record = host.plugins.records["StallingPolicy"]
        assert await _eventually(
            lambda: (record.error or "").startswith("before_operation hook blocked the event loop")
        )
        assert record.error.endswith("in before_operation") and record.status == "ok"
        assert any("by before_operation hook of StallingPolicy" in r.getMessage() for r in caplog.records)
        assert host.slice_status()[0]["error"] is None  # echo did nothing wrong


@pytest.mark.asyncio
async def test_no_report_while_the_loop_keeps_running(tmp_path, caplog):
    config = {"core": {**FAST["core"], "loop_block_threshold": 0.2}}
    async with host_running(tmp_path, [sp.echo_plugin], config=config) as host:
        slow = await host.call("echo.slow", text="x", times=6)  # 0.6 s, awaiting
        assert slow.success
        assert host.slice_status()[0]["error"] is None
    assert not [r for r in caplog.records if "event loop" in r.getMessage()]
