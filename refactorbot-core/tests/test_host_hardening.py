"""The host under faults: a broken unified log, hook wrappers, observers still running at stop."""

import asyncio
import contextlib
import logging
import sqlite3

import pytest
import sample_plugins as sp
from refactorbot import ErrorType, LLMCall, hookimpl
from refactorbot.testing import build_host, host_running

FAST = {"core": {"health_interval": 3600, "stop_timeout": 0.5, "drain_timeout": 1.0}}


def _failed_writes(caplog):
    return [r for r in caplog.records if r.name == "refactorbot.database" and "batch write" in r.getMessage()]


# -- 1. a failed log write must not feed itself ----------------------------------------------------


@pytest.mark.asyncio
async def test_a_failed_log_write_is_reported_once_not_fed_back_into_the_log(tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="refactorbot")
    config = {"core": {**FAST["core"], "log_level": "DEBUG"}}
    host = build_host(tmp_path, [sp.echo_plugin], config=config)
    await host.start()
    with sqlite3.connect(tmp_path / "master.db") as db:  # the unified log's table is gone
        db.execute("DROP TABLE logs")
    for n in range(5):
        logging.getLogger("refactorbot.test").warning("record %d", n)
    assert (await host.call("echo.echo", text="still serving")).success
    await asyncio.wait_for(host._state.flush(), 1)
    assert host._state._logs.pending == 0  # the failure it logged was not queued behind it
    failed = _failed_writes(caplog)
    assert 1 <= len(failed) <= 3, [r.getMessage() for r in failed]
    assert "no such table: logs" in (failed[0].exc_text or str(failed[0].exc_info))
    await asyncio.wait_for(host.stop(), 1)
    # stopping logs a few records more; each failed batch is one error, never a cascade
    assert len(_failed_writes(caplog)) <= 4
    with sqlite3.connect(tmp_path / "master.db") as db:  # the operation log was not affected
        assert db.execute("SELECT count(*) FROM operation_log").fetchone() == (1,)


@pytest.mark.asyncio
async def test_a_writer_fed_while_it_flushes_writes_a_snapshot_and_lets_close_in(tmp_path):
    from refactorbot.database import SliceDatabase

    db = SliceDatabase(tmp_path / "t.db")
    await db.open()
    await db.execute("CREATE TABLE t (n INTEGER)")
    writer = db.batch_writer("INSERT INTO t (n) VALUES (?)")
    produced = 0

    async def producer():  # keeps adding rows, faster than they are written
        nonlocal produced
        while True:
            writer.add((produced,))
            produced += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(producer())
    for _ in range(3):
        writer.add((-1,))
    written = await asyncio.wait_for(writer.flush(), 5)
    assert written >= 3  # what was buffered when the flush began, at least
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await asyncio.wait_for(db.close(), 5)
    assert await _count(tmp_path / "t.db") == produced + 3


async def _count(path):
    with sqlite3.connect(path) as db:
        return db.execute("SELECT count(*) FROM t").fetchone()[0]


@pytest.mark.asyncio
async def test_master_db_has_no_key_value_table(tmp_path):
    from importlib.resources import files

    from refactorbot.database import SliceDatabase

    older = tmp_path / "older"  # master.db as the first two migrations left it, kv table included
    older.mkdir()
    for name in ("0001_initial.sql", "0002_logs_keyset.sql"):
        (older / name).write_text((files("refactorbot") / "state_migrations" / name).read_text())
    db = SliceDatabase(tmp_path / "home" / "master.db", older)
    await db.open()
    assert await db.scalar("SELECT count(*) FROM sqlite_master WHERE name = 'kv'") == 1
    await db.close()
    async with host_running(tmp_path / "home", [sp.echo_plugin], config=FAST):
        pass
    with sqlite3.connect(tmp_path / "home" / "master.db") as db:
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "kv" not in tables and {"slice_state", "operation_log", "logs"} <= tables


# -- 2. pluggy hook wrappers are refused at load, with the reason ---------------------------------


Static, Gateways = sp.Static, sp.Gateways


class WrappingBudget:
    """A new-style wrapper around a firstresult hook: it would veto every call with a generator."""

    REFACTORBOT_API = 1

    def __init__(self):
        self.ran = []

    @hookimpl(wrapper=True)
    def before_llm_call(self, call):
        self.ran.append("before")
        result = yield
        self.ran.append("after")
        return result

    @hookimpl
    def register_gateways(self, register):
        register(Static)


class WrappingStartup:
    """An old-style wrapper around ``startup``: its body would never run."""

    REFACTORBOT_API = 1

    def __init__(self):
        self.ran = []

    @hookimpl(hookwrapper=True)
    def startup(self, host):
        self.ran.append("startup")
        yield

    @hookimpl
    def after_operation(self, request, response):
        self.ran.append("after_operation")


@pytest.mark.asyncio
async def test_a_wrapper_on_a_firstresult_hook_is_refused_and_calls_go_through(tmp_path):
    budget = WrappingBudget()
    async with host_running(tmp_path, [Gateways(), budget], config=FAST) as host:
        record = host.plugins.records["WrappingBudget"]
        assert record.status == "failed"
        assert record.error == (
            "before_llm_call is a hook wrapper (@hookimpl(wrapper=True)), which refactorbot does not support:"
            " implement it as a plain or async function (see docs/hooks.md)"
        )
        assert record.hooks == [] and "static" in host.plugins.registry.gateways  # Gateways' one
        answer = await host.complete(LLMCall(model="m", messages=[{"role": "user", "content": "hi"}]))
        assert answer.content == "m:hi"
    assert budget.ran == []
    assert host.plugins.registry.gateways["static"].plugin == "Gateways"  # nothing of the refused plugin


@pytest.mark.asyncio
async def test_a_wrapper_on_startup_is_refused_with_everything_its_plugin_implements(tmp_path):
    plugin = WrappingStartup()
    async with host_running(tmp_path, [sp.echo_plugin, plugin], config=FAST) as host:
        record = host.plugins.records["WrappingStartup"]
        assert record.status == "failed"
        assert record.error.startswith("startup is a hook wrapper (@hookimpl(hookwrapper=True)), which refactorbot")
        assert (await host.call("echo.noop")).success
    assert plugin.ran == []  # neither the wrapper nor its plugin's other hooks ran
    assert host.plugins.failed == [record]


def test_wrappers_are_failures_in_strict_mode(tmp_path):
    from refactorbot.errors import PluginError
    from refactorbot.plugins import PluginHost

    host = PluginHost({"RB_STRICT_PLUGINS": "1"})
    with pytest.raises(PluginError, match="before_llm_call is a hook wrapper"):
        host.register(WrappingBudget(), name="budget")


# -- 3. after_operation calls still running at stop are awaited (within the stop timeout) ---------


class SlowObserver:
    """An ``after_operation`` observer that takes a while (it writes somewhere, say)."""

    REFACTORBOT_API = 1

    def __init__(self, seconds):
        self.seconds = seconds
        self.seen = []

    @hookimpl
    async def after_operation(self, request, response):
        await asyncio.sleep(self.seconds)
        self.seen.append((request.target, response.success))


@pytest.mark.asyncio
async def test_stop_waits_for_after_operation_calls(tmp_path):
    observer = SlowObserver(0.3)
    config = {"core": {**FAST["core"], "stop_timeout": 10}}
    host = build_host(tmp_path, [sp.echo_plugin, observer], config=config)
    await host.start()
    assert (await host.call("echo.echo", text="a")).success
    assert (await host.call("echo.boom")).error_type is ErrorType.OPERATION_ERROR
    await asyncio.wait_for(host.stop(), 10)
    assert observer.seen == [("echo.echo", True), ("echo.boom", False)]


@pytest.mark.asyncio
async def test_after_operation_calls_past_the_stop_timeout_are_cancelled_and_logged(tmp_path, caplog):
    observer = SlowObserver(3600)
    host = build_host(tmp_path, [sp.echo_plugin, observer], config=FAST)  # stop_timeout 0.5 s
    await host.start()
    assert (await host.call("echo.noop")).success
    await asyncio.wait_for(host.stop(), 5)
    assert observer.seen == []
    (record,) = [r for r in caplog.records if r.name == "refactorbot.master" and "after_operation" in r.getMessage()]
    assert record.levelname == "ERROR"
    assert record.getMessage() == "1 after_operation call(s) did not finish within 0.5s of the stop; cancelled"


# -- 5. the errors a caller of another slice can tell apart ----------------------------------------


@pytest.mark.asyncio
async def test_calling_another_slice_raises_operation_not_found_and_invalid_payload(tmp_path):
    from refactorbot import InvalidPayload, OperationFailed, OperationNotFound

    async with host_running(tmp_path, [sp.echo_plugin], config=FAST) as host:
        ctx = host.instance("echo").ctx
        with pytest.raises(OperationNotFound) as missing:
            await ctx.call("echo.nope")
        assert missing.value.error_type == "unknown_operation"
        assert str(missing.value).startswith("echo.nope failed: slice 'echo' has no operation 'nope' (available: ")
        with pytest.raises(InvalidPayload) as invalid:
            await ctx.call("echo.echo", times=3)
        assert str(invalid.value) == "echo.echo failed: invalid payload for echo.echo: text: Field required"
        with pytest.raises(OperationFailed) as failed:
            await ctx.call("echo.boom")
        assert type(failed.value) is OperationFailed and failed.value.error_type == "operation_error"
        # a slice that lets it escape answers with its message, like any refactorbot error
        asked = await host.call("echo.ask", text="echo.nope")
        assert asked.error_type is ErrorType.OPERATION_ERROR
        assert asked.error_message.startswith("echo.nope failed: slice 'echo' has no operation 'nope'")
    assert issubclass(OperationNotFound, OperationFailed) and issubclass(InvalidPayload, OperationFailed)


# -- 5. a failed teardown after a failed start is logged -------------------------------------------


@pytest.mark.asyncio
async def test_a_slice_whose_start_and_then_shutdown_fail_logs_both(tmp_path, caplog):
    from refactorbot import AtomicSlice

    class Fragile(AtomicSlice):
        slice_id = "fragile"
        uses_database = False

        async def start(self):
            raise RuntimeError("port taken")

        async def shutdown(self):
            raise OSError("socket already closed")

    class Plugin:
        REFACTORBOT_API = 1

        @hookimpl
        def register_slices(self, register):
            register(Fragile)

    async with host_running(tmp_path, [Plugin()], config=FAST) as host:
        assert host.slice_status()[0]["error"] == "RuntimeError: port taken"
    messages = [r.getMessage() for r in caplog.records if r.name == "refactorbot.master"]
    assert "slice fragile: shutdown after a failed start failed too: OSError: socket already closed" in messages
    assert "slice fragile failed to start: RuntimeError: port taken" in messages


# -- the home: private from the first instant, test hosts included ---------------------------------


@pytest.mark.asyncio
async def test_a_test_host_home_is_private_and_starts_without_a_permissions_warning(tmp_path, caplog):
    home = tmp_path / "home"
    async with host_running(home, [sp.echo_plugin], config=FAST):
        pass
    assert (home.stat().st_mode & 0o777, (home / "refactorbot.toml").stat().st_mode & 0o777) == (0o700, 0o600)
    assert not [r for r in caplog.records if "open to other users" in r.getMessage()]


@pytest.mark.asyncio
async def test_master_core_creates_a_missing_home_private(tmp_path):
    import os

    from refactorbot.config import load_settings
    from refactorbot.master import MasterCore
    from refactorbot.plugins import PluginHost

    home = tmp_path / "new" / "home"
    saved = os.umask(0)  # the loosest umask: a plain mkdir would leave the home 0777
    try:
        host = MasterCore(load_settings(home, env={}), PluginHost({}), {})
        await host.start()
        try:
            assert home.stat().st_mode & 0o777 == 0o700
        finally:
            await host.stop()
    finally:
        os.umask(saved)


# -- 12. a failed startup or shutdown hook is one line: the plugin and the cause --------------------


class Troubled:
    REFACTORBOT_API = 1

    @hookimpl
    async def startup(self, host):
        await asyncio.Event().wait()  # never finishes: cut at [core] start_timeout

    @hookimpl
    async def shutdown(self, host):
        from refactorbot.errors import ConfigError

        raise ConfigError("[plugins.troubled]: cannot flush the queue to /nowhere")


@pytest.mark.asyncio
async def test_failed_startup_and_shutdown_hooks_name_the_plugin_and_the_cause(tmp_path, caplog):
    config = {"core": {**FAST["core"], "start_timeout": 0.2}}
    async with host_running(tmp_path, [sp.echo_plugin, Troubled()], config=config) as host:
        assert (await host.call("echo.noop")).success
    messages = [
        r.getMessage() for r in caplog.records if r.name == "refactorbot.master" and "hook of" in r.getMessage()
    ]
    assert messages == [
        "startup hook of Troubled did not finish within 0.2s",
        "shutdown hook of Troubled failed: [plugins.troubled]: cannot flush the queue to /nowhere",
    ]
