"""Process isolation: a slice in its own worker, limits enforced, crashes contained and reported."""

from __future__ import annotations

import asyncio
import os
import sqlite3

import isolated_plugins
import pytest
import pytest_asyncio
from refactorbot import ErrorType
from refactorbot._isolation import CRASHED
from refactorbot.errors import ConfigError
from refactorbot.testing import build_host

CORE = {"health_interval": 3600, "stop_timeout": 5.0, "restart_backoff": 0.05, "restart_backoff_max": 0.2}


def config(**limits: int) -> dict:
    fragile: dict = {"isolation": "process"}
    if limits:
        fragile["limits"] = limits
    return {"core": CORE, "slices": {"fragile": fragile}}


def row(host, slice_id: str) -> dict:
    return next(r for r in host.slice_status() if r["slice_id"] == slice_id)


async def back_up(host, old_pid: int) -> int:
    """Wait until the fragile slice answers from a new worker; return its pid."""
    for _ in range(2000):
        response = await host.call("fragile.pid")
        if response.success and response.data != old_pid:
            return response.data
        await asyncio.sleep(0.01)
    raise AssertionError(f"the worker never came back: {row(host, 'fragile')}")


@pytest_asyncio.fixture
async def host_factory(tmp_path):
    hosts = []

    async def make(cfg: dict):
        host = build_host(tmp_path / f"home{len(hosts)}", [isolated_plugins], config=cfg)
        hosts.append(host)
        await host.start()
        return host

    yield make
    for host in hosts:
        await host.stop()


@pytest.mark.asyncio
async def test_an_isolated_slice_serves_like_an_in_process_one(host_factory):
    host = await host_factory(config())
    pid = (await host.call("fragile.pid")).data
    assert pid != os.getpid()
    assert (await host.call("fragile.ask")).data == "steady said pong"  # ctx.call back through the host
    bad = await host.call("fragile.allocate", mb=0)
    assert bad.error_type is ErrorType.INVALID_PAYLOAD and "mb" in bad.error_message
    missing = await host.call("fragile.nope")
    assert missing.error_type is ErrorType.UNKNOWN_OPERATION
    stream = host.astream("fragile.count", n=3)
    assert [chunk async for chunk in stream] == [1, 2, 3] and stream.response.data == 3
    await host.call("steady.announce")  # an event from the host reaches the worker's handler
    for _ in range(500):
        if (await host.call("fragile.seen_events")).data:
            break
        await asyncio.sleep(0.01)
    assert (await host.call("fragile.seen_events")).data == ["steady.news"]
    steady = host.instance("steady")
    assert steady.topics == ["fragile.asked from fragile: {'answer': 'pong'}"]  # publish went through the host
    status = row(host, "fragile")
    assert status["status"] == "running" and status["isolation"]["pid"] == pid
    assert host.slice_class("fragile").get_capabilities().operations  # the API and CLI see its operations
    report = await host.instance("fragile").run_self_diagnostics()
    assert report.slice_id == "fragile" and report.passed


@pytest.mark.asyncio
async def test_os_exit_fails_the_request_restarts_the_worker_and_spares_the_host(host_factory):
    host = await host_factory(config())
    pid = (await host.call("fragile.pid")).data
    crashed = await host.call("fragile.exit")
    assert crashed.error_type is CRASHED
    assert crashed.error_message == (
        "slice 'fragile' crashed while running fragile.exit: exited with status 3"
        " (os._exit, sys.exit in a thread, or a native library ended it)"
    )
    assert (await host.call("steady.ping")).data == "pong"
    new_pid = await back_up(host, pid)
    assert new_pid != pid
    status = row(host, "fragile")
    assert status["status"] == "running" and status["restarts"] == 1
    assert status["isolation"]["crashes"] == 1 and "exited with status 3" in status["isolation"]["last_crash"]
    db = await host.master_db()
    logged = await db.fetchall("SELECT message FROM logs WHERE message LIKE '%crashed%'")
    assert any("slice fragile crashed: exited with status 3" in r[0] for r in logged)


@pytest.mark.asyncio
async def test_a_segfault_is_contained_and_named(host_factory):
    host = await host_factory(config())
    pid = (await host.call("fragile.pid")).data
    crashed = await host.call("fragile.segfault")
    assert crashed.error_type is CRASHED
    assert "killed by SIGSEGV (segmentation fault in native code)" in crashed.error_message
    assert (await host.call("steady.ping")).data == "pong"
    await back_up(host, pid)
    assert row(host, "fragile")["isolation"]["last_crash"] == "killed by SIGSEGV (segmentation fault in native code)"


@pytest.mark.asyncio
async def test_allocating_past_the_memory_limit_is_reported_with_the_limit(host_factory):
    host = await host_factory(config(memory_mb=256))
    pid = (await host.call("fragile.pid")).data
    assert (await host.call("fragile.allocate", mb=16)).success
    over = await host.call("fragile.allocate", mb=512)
    assert over.error_type in (ErrorType.RESOURCE_LIMIT, CRASHED)
    if row(host, "fragile")["isolation"]["memory"] == "cgroup":  # the kernel's OOM killer ends the worker
        assert "memory_mb limit exceeded: cgroup memory.max of 256 MB" in over.error_message
        await back_up(host, pid)
    else:  # RLIMIT_AS: the allocation fails inside the worker, which keeps serving
        assert over.error_message == (
            "memory_mb limit exceeded: RLIMIT_AS of 256 MB (fragile.allocate raised MemoryError)"
        )
        assert (await host.call("fragile.pid")).data == pid
    assert (await host.call("steady.ping")).data == "pong"


@pytest.mark.asyncio
async def test_cpu_and_open_file_limits_are_named(host_factory):
    host = await host_factory(config(cpu_seconds=1, open_files=64))
    pid = (await host.call("fragile.pid")).data
    files = await host.call("fragile.open_files", n=100)
    assert files.error_type is ErrorType.RESOURCE_LIMIT
    assert files.error_message.startswith("open_files limit reached: RLIMIT_NOFILE of 64 (")
    assert (await host.call("fragile.open_files", n=8)).success
    spun = await host.call("fragile.spin")
    assert spun.error_type is CRASHED
    assert "cpu_seconds limit exceeded: RLIMIT_CPU of 1s (killed by SIGXCPU)" in spun.error_message
    assert (await host.call("steady.ping")).data == "pong"
    await back_up(host, pid)


@pytest.mark.asyncio
async def test_reload_restarts_the_worker(host_factory):
    host = await host_factory(config())
    pid = (await host.call("fragile.pid")).data
    with pytest.raises(Exception, match="not an installed distribution"):
        await host.reload_slice("fragile")  # registered directly: nothing to re-import
    restarted = await host.restart_slice("fragile")
    assert restarted and (await host.call("fragile.pid")).data != pid
    assert not _alive(pid)


@pytest.mark.asyncio
async def test_stop_ends_the_worker(tmp_path):
    host = build_host(tmp_path, [isolated_plugins], config=config())
    await host.start()
    pid = (await host.call("fragile.pid")).data
    await host.stop()
    assert not _alive(pid)
    saved = dict(sqlite3.connect(tmp_path / "master.db").execute("SELECT slice_id, status FROM slice_state"))
    assert saved == {"fragile": "stopped", "steady": "stopped"}


def test_a_bad_isolation_setting_names_the_key(tmp_path):
    from refactorbot._isolation import isolation_of
    from refactorbot.config import load_settings

    (tmp_path / "refactorbot.toml").write_text('[slices.fragile]\nisolation = "thread"\n')
    with pytest.raises(ConfigError, match=r"\[slices.fragile\]: isolation: Input should be 'inline' or 'process'"):
        isolation_of(load_settings(tmp_path, env={}), "fragile", {})
    (tmp_path / "refactorbot.toml").write_text(
        '[slices.fragile]\nisolation = "process"\n[slices.fragile.limits]\nmemory = 5\n'
    )
    with pytest.raises(ConfigError, match=r"limits.memory: Extra inputs are not permitted"):
        isolation_of(load_settings(tmp_path, env={}), "fragile", {})


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie not yet reaped counts as gone
        return stat.read().split()[2] != "Z"
