"""Hot reload: ``MasterCore.reload_slice`` restarts one plugin's slices with the code installed now.

The plugin is a real distribution (a package plus its dist-info) in a folder on ``sys.path``;
"upgrading" it replaces both, as ``pip install -U`` does.
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import sys
import textwrap
from pathlib import Path

import pytest
from distfactory import GOOD, make_dist
from refactorbot import ErrorType
from refactorbot.errors import PluginError, SliceUnavailable
from refactorbot.testing import build_host

FAST = {"core": {"health_interval": 3600, "stop_timeout": 2.0, "drain_timeout": 10.0}}
ENV = {"RB_LOAD_PLUGINS": "rb-reloadable,rb-steady"}

#: Version 1 and later: ``answers.py`` (a submodule) says which version runs; ``slow`` waits for a gate.
PLUGIN = '''
import asyncio
from refactorbot import hookimpl, AtomicSlice, operation
from rb_reloadable.answers import ANSWER
REFACTORBOT_API = 1
STARTED = asyncio.Event()
GATE = asyncio.Event()

class Reloadable(AtomicSlice):
    slice_id = "reloadable"
    version = "{version}"
    uses_database = False

    async def start(self) -> None:
        {start}

    @operation
    async def ping(self) -> str:
        """Say which version answers."""
        return ANSWER

    @operation
    async def slow(self) -> str:
        """Answer once the test opens the gate."""
        STARTED.set()
        await GATE.wait()
        return ANSWER + "-slow"

{extra}

@hookimpl
def register_slices(register):
    register(Reloadable)
    {register_more}
'''


def install(
    site: Path,
    version: str,
    *,
    start: str = "pass",
    extra: str = "",
    register_more: str = "",
    init: str | None = None,
) -> None:
    """Install (or replace) ``rb-reloadable`` ``version`` in ``site``, as ``pip install -U`` would."""
    for old in site.glob("rb_reloadable-*.dist-info"):
        shutil.rmtree(old)
    package = site / "rb_reloadable"
    shutil.rmtree(package, ignore_errors=True)
    package.mkdir(parents=True)
    code = (
        init
        if init is not None
        else PLUGIN.format(version=version, start=start, extra=extra, register_more=register_more)
    )
    (package / "__init__.py").write_text(textwrap.dedent(code))
    (package / "answers.py").write_text(f'ANSWER = "v{version}"\n')
    info = site / f"rb_reloadable-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: rb-reloadable\nVersion: {version}\n")
    (info / "entry_points.txt").write_text("[refactorbot]\nrb_reloadable = rb_reloadable\n")
    (info / "RECORD").write_text("rb_reloadable/__init__.py,,\nrb_reloadable/answers.py,,\n")


@pytest.fixture
def site(tmp_path, monkeypatch):
    folder = tmp_path / "site"
    install(folder, "1.0")
    make_dist(folder, "rb-steady", "rb_steady", GOOD.format(cls="Steady", sid="steady"))
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)  # a rewrite in the same second is read again
    yield folder
    for name in [m for m in sys.modules if m.startswith(("rb_reloadable", "rb_steady"))]:
        del sys.modules[name]


def host_for(tmp_path: Path):
    return build_host(tmp_path / "home", config=FAST, env=ENV, load_installed=True)


def row(host, slice_id: str) -> dict:
    return next(r for r in host.slice_status() if r["slice_id"] == slice_id)


async def answer(host, target: str = "reloadable.ping"):
    response = await host.call(target)
    return response.data if response.success else f"{response.error_type.value}: {response.error_message}"


async def until(predicate) -> None:
    """Let the loop run until ``predicate()`` holds (the reload task advances on each turn)."""
    for _ in range(10_000):
        if predicate():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


@pytest.mark.asyncio
async def test_reload_runs_the_new_version_after_in_flight_requests_finish(tmp_path, site):
    host = host_for(tmp_path)
    await host.start()
    try:
        assert await answer(host) == "v1.0"
        assert row(host, "reloadable")["version"] == "1.0"
        old = sys.modules["rb_reloadable"]
        slow = asyncio.ensure_future(host.call("reloadable.slow"))
        await old.STARTED.wait()

        install(site, "2.0")
        reload = asyncio.ensure_future(host.reload_slice("reloadable"))
        await until(lambda: row(host, "reloadable")["status"] == "reloading")
        # new requests get a clear refusal while the old one drains; other slices keep serving
        refused = await host.call("reloadable.ping")
        assert refused.error_type is ErrorType.SLICE_UNAVAILABLE
        assert refused.error_message == "slice 'reloadable' is reloading"
        assert await answer(host, "steady.ping") == "pong"
        assert not reload.done()

        old.GATE.set()  # the in-flight request finishes on the old code
        done = await slow
        assert done.success and done.data == "v1.0-slow"
        await reload

        assert await answer(host) == "v2.0"  # the new package and its submodule
        status = row(host, "reloadable")
        assert (status["status"], status["version"], status["error"]) == ("running", "2.0", None)
        assert host.plugins.records["rb-reloadable"].version == "2.0"
        assert sys.modules["rb_reloadable"] is not old
        assert row(host, "steady")["restarts"] == 0 and await answer(host, "steady.ping") == "pong"
    finally:
        await host.stop()
    saved = sqlite3.connect(tmp_path / "home" / "master.db").execute(
        "SELECT version FROM slice_state WHERE slice_id = 'reloadable'"
    )
    assert saved.fetchone() == ("2.0",)


@pytest.mark.asyncio
async def test_new_version_that_does_not_import_leaves_the_old_one_running(tmp_path, site):
    host = host_for(tmp_path)
    await host.start()
    try:
        old = sys.modules["rb_reloadable"]
        install(site, "2.0", init="import rb_reloadable.answers\nraise RuntimeError('bad release')\n")
        with pytest.raises(PluginError, match=r"importing rb_reloadable failed: RuntimeError: bad release"):
            await host.reload_slice("reloadable")
        assert await answer(host) == "v1.0"
        assert sys.modules["rb_reloadable"] is old
        assert sys.modules["rb_reloadable.answers"].ANSWER == "v1.0"  # not half new
        status = row(host, "reloadable")
        assert status["status"] == "running" and status["version"] == "1.0"
        assert status["error"].startswith("reload failed: importing rb_reloadable failed: RuntimeError: bad release")
        assert status["error"].endswith("running 1.0")
        assert host.plugins.records["rb-reloadable"].version == "1.0"

        install(site, "3.0")  # a fixed release reloads, and clears the error
        await host.reload_slice("reloadable")
        assert await answer(host) == "v3.0"
        assert row(host, "reloadable")["error"] is None
    finally:
        await host.stop()


@pytest.mark.asyncio
async def test_new_version_that_fails_to_start_is_rolled_back(tmp_path, site):
    host = host_for(tmp_path)
    await host.start()
    try:
        install(site, "2.0", start="raise RuntimeError('no config for 2.0')")
        with pytest.raises(PluginError, match=r"slice 'reloadable' failed to start: RuntimeError: no config for 2.0"):
            await host.reload_slice("reloadable")
        assert await answer(host) == "v1.0"
        assert row(host, "reloadable")["version"] == "1.0"
        assert sys.modules["rb_reloadable.answers"].ANSWER == "v1.0"
        assert host.slice_class("reloadable").version == "1.0"
    finally:
        await host.stop()


@pytest.mark.asyncio
async def test_new_version_must_still_register_the_slice(tmp_path, site):
    host = host_for(tmp_path)
    await host.start()
    try:
        install(
            site,
            "2.0",
            init="from refactorbot import hookimpl\nREFACTORBOT_API = 1\n\n@hookimpl\ndef register_slices(register):\n    pass\n",
        )
        with pytest.raises(PluginError, match=r"rb-reloadable 2.0 no longer registers slice 'reloadable'"):
            await host.reload_slice("reloadable")
        assert await answer(host) == "v1.0"
        assert "reloadable" in host.plugins.registry.slices
    finally:
        await host.stop()


@pytest.mark.asyncio
async def test_every_slice_of_the_plugin_reloads_together_and_hooks_are_replaced(tmp_path, site):
    twin = '''
class Twin(AtomicSlice):
    slice_id = "twin"
    version = "{version}"
    uses_database = False

    @operation
    async def ping(self) -> str:
        """Say which version answers."""
        return ANSWER + "-twin"

@hookimpl
def before_operation(request):
    return {veto}
'''
    install(site, "1.0", extra=twin.format(version="1.0", veto="None"), register_more="register(Twin)")
    host = host_for(tmp_path)
    await host.start()
    try:
        assert await answer(host, "twin.ping") == "v1.0-twin"
        veto = "'steady is closed' if request.slice_id == 'steady' else None"
        install(site, "2.0", extra=twin.format(version="2.0", veto=veto), register_more="register(Twin)")
        await host.reload_slice("twin")
        assert await answer(host, "twin.ping") == "v2.0-twin"
        assert await answer(host) == "v2.0"
        assert await answer(host, "steady.ping") == "refused: refused: steady is closed"
        assert len(host.plugins.pm.hook.before_operation.get_hookimpls()) == 1
    finally:
        await host.stop()


@pytest.mark.asyncio
async def test_reload_of_an_unknown_slice_or_of_a_plugin_without_a_distribution(tmp_path, site):
    import sample_plugins as sp

    host = build_host(tmp_path / "home", [sp.echo_plugin], config=FAST, env=ENV, load_installed=True)
    await host.start()
    try:
        with pytest.raises(
            SliceUnavailable, match=r"unknown slice 'ghost' \(installed and enabled: echo, reloadable, steady\)"
        ):
            await host.reload_slice("ghost")
        with pytest.raises(PluginError, match=r"not an installed distribution"):
            await host.reload_slice("echo")
        assert (await host.call("echo.noop")).success
        for stale in site.glob("rb_reloadable-*.dist-info"):
            shutil.rmtree(stale)
        with pytest.raises(PluginError, match=r"distribution rb-reloadable is no longer installed"):
            await host.reload_slice("reloadable")
        assert await answer(host) == "v1.0"
    finally:
        await host.stop()
