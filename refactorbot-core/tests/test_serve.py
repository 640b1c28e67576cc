"""``refactorbot serve`` stops gracefully on SIGTERM and SIGINT; a replacement event bus is used."""

import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
import sample_plugins as sp
from distfactory import GOOD, make_dist
from refactorbot import hookimpl
from refactorbot.events import InMemoryEventBus
from refactorbot.testing import host_running


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_stops_gracefully_on_signals(tmp_path, sig):
    site = tmp_path / "site"
    make_dist(site, "rb-good", "rb_good", GOOD.format(cls="Good", sid="good"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RB_")}
    env.update({"PYTHONPATH": str(site), "RB_HOME": str(tmp_path / "home"), "RB_LOAD_PLUGINS": "rb-good"})
    proc = subprocess.Popen(
        [sys.executable, "-m", "refactorbot", "serve"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    first = proc.stdout.readline()
    assert "serving 1 slice(s)" in first and "good" in first
    time.sleep(0.2)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "refactorbot stopped." in out
    state = (
        sqlite3.connect(tmp_path / "home" / "master.db").execute("SELECT slice_id, status FROM slice_state").fetchall()
    )
    assert state == [("good", "stopped")]


@pytest.mark.asyncio
async def test_provide_event_bus_replaces_the_in_memory_bus(tmp_path):
    class RecordingBus(InMemoryEventBus):
        published = []

        async def publish(self, event):
            self.published.append(event.topic)
            await super().publish(event)

    class BusPlugin:
        REFACTORBOT_API = 1

        @hookimpl
        def provide_event_bus(self, config):
            assert config.home == tmp_path
            return RecordingBus()

    async with host_running(tmp_path, [sp.echo_plugin, BusPlugin()]) as host:
        assert isinstance(host.bus, RecordingBus)
        await host.call("echo.announce", text="hi")
    assert RecordingBus.published == ["echo.said"]
