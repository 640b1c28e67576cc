"""``refactorbot serve`` stops on SIGTERM and SIGINT, even when a plugin blocks the event loop."""

import os
import queue
import re
import signal
import sqlite3
import subprocess
import sys
import threading
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
    proc.send_signal(sig)  # handled from before "serving" is printed
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


# -- a plugin must not be able to stop the host -------------------------------------------------

HOOK = "from refactorbot import hookimpl\nREFACTORBOT_API = 1\n"

BLOCKER = """
import asyncio
import time

from refactorbot import hookimpl

REFACTORBOT_API = 1

@hookimpl
def startup(host):
    if {block_startup}:
        print("blocking the loop", flush=True)
        time.sleep(3600)
    asyncio.get_running_loop().call_later(0.05, asyncio.ensure_future, host.call("good.ping"))

@hookimpl
def before_operation(request):
    print("blocking the loop", flush=True)
    {block}
"""

BLOCKS = {"sleep": "time.sleep(3600)", "spin": "while True:\n        pass"}


class Served:
    """A ``refactorbot serve`` subprocess whose merged output is read line by line as it comes."""

    def __init__(self, tmp_path, plugins, env=None):
        site = tmp_path / "site"
        make_dist(site, "rb-good", "rb_good", GOOD.format(cls="Good", sid="good"))
        for dist, module, code in plugins:
            make_dist(site, dist, module, code)
        environ = {k: v for k, v in os.environ.items() if not k.startswith("RB_")}
        names = ",".join(["rb-good", *(dist for dist, _, _ in plugins)])
        environ.update({"PYTHONPATH": str(site), "RB_HOME": str(tmp_path / "home"), "RB_LOAD_PLUGINS": names})
        environ.update(env or {})
        self.home = tmp_path / "home"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "refactorbot", "serve"],
            env=environ,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put("")

    def wait_for(self, text, timeout=60.0):
        """Return the first line containing ``text``; fail with the output so far after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.proc.kill()
                pytest.fail(f"no line with {text!r} within {timeout}s; output:\n{''.join(self.output)}")
            self.output.append(line)
            if text in line:
                return line
            if line == "":
                pytest.fail(f"serve ended before printing {text!r}; output:\n{''.join(self.output)}")

    def ended(self, timeout=60.0):
        """Wait for the process to end; return its status and its whole output."""
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"serve still running {timeout}s later; output:\n{''.join(self.output)}")
        while (line := self.lines.get(timeout=30)) != "":
            self.output.append(line)
        return code, "".join(self.output)


@pytest.mark.parametrize(
    ("where", "how"), [("before_operation", "sleep"), ("before_operation", "spin"), ("startup", "sleep")]
)
def test_sigterm_ends_serve_within_the_stop_timeout_while_a_hook_blocks_the_loop(tmp_path, where, how):
    code = BLOCKER.format(block_startup=where == "startup", block=BLOCKS[how])
    served = Served(
        tmp_path,
        [("rb-blocker", "rb_blocker", code)],
        env={"RB_STOP_TIMEOUT": "2", "RB_LOOP_BLOCK_THRESHOLD": "0.3"},
    )
    if where != "startup":
        served.wait_for("refactorbot serving 1 slice(s)")
    served.wait_for("blocking the loop")
    report = served.wait_for("the event loop has been blocked for")
    assert f"by {where} hook of rb-blocker at rb_blocker.py:" in report
    sent = time.monotonic()
    served.proc.send_signal(signal.SIGTERM)
    status, output = served.ended()
    took = time.monotonic() - sent
    assert status == 128 + signal.SIGTERM, output
    assert took < 2 + 8, f"took {took:.1f}s"  # the stop timeout, plus ample room for a loaded machine
    assert "SIGTERM received: stopping (the process ends within 2s)" in output
    last = re.search(r"the host did not stop within 2s; the event loop has been held for [\d.]+s by (.*)", output)
    assert last and last.group(1).startswith(f"{where} hook of rb-blocker at rb_blocker.py:"), output
    assert BLOCKS[how].splitlines()[0] in output.split(last.group(0))[1]  # the stack shows the culprit's line
    assert "refactorbot stopped." not in output
    logged = sqlite3.connect(served.home / "master.db").execute("SELECT level_name, message FROM logs").fetchall()
    assert any(level == "CRITICAL" and f"{where} hook of rb-blocker" in message for level, message in logged)


def test_a_second_sigint_ends_serve_at_once_while_the_loop_is_blocked(tmp_path):
    code = BLOCKER.format(block_startup=False, block=BLOCKS["sleep"])
    served = Served(
        tmp_path,
        [("rb-blocker", "rb_blocker", code)],
        env={"RB_STOP_TIMEOUT": "600", "RB_LOOP_BLOCK_THRESHOLD": "0.3"},
    )
    served.wait_for("the event loop has been blocked for")
    served.proc.send_signal(signal.SIGINT)
    served.wait_for("SIGINT received: stopping")
    served.proc.send_signal(signal.SIGINT)
    status, output = served.ended(timeout=60)  # far less than the 600 s stop timeout
    assert status == 128 + signal.SIGINT, output
    assert "SIGINT received again while stopping: exiting now" in output


def test_serve_runs_and_stops_when_a_registration_hook_never_returns(tmp_path):
    hangs = HOOK + "import time\n@hookimpl\ndef register_slices(register):\n    while True:\n        time.sleep(1)\n"
    spins = HOOK + "@hookimpl\ndef register_tools(register):\n    while True:\n        pass\n"
    served = Served(
        tmp_path,
        [("rb-hangs", "rb_hangs", hangs), ("rb-spins", "rb_spins", spins)],
        env={"RB_PLUGIN_LOAD_TIMEOUT": "1"},
    )
    served.wait_for("refactorbot serving 1 slice(s)")
    served.wait_for("plugin rb-hangs hung: register_slices did not return within 1s (RB_PLUGIN_LOAD_TIMEOUT)")
    served.wait_for("plugin rb-spins hung: register_tools did not return within 1s (RB_PLUGIN_LOAD_TIMEOUT)")
    served.proc.send_signal(signal.SIGTERM)
    status, output = served.ended()
    assert status == 0, output
    assert "refactorbot stopped." in output


SLOW_TO_STOP = """
import asyncio

from refactorbot import AtomicSlice, hookimpl, operation

REFACTORBOT_API = 1


class Sticky(AtomicSlice):
    slice_id = "sticky"
    uses_database = False

    @operation
    async def wait(self) -> None:
        '''Wait (awaiting) for an hour.'''
        print("in flight", flush=True)
        await asyncio.sleep(3600)

    async def stop(self) -> None:
        await asyncio.sleep(3600)


@hookimpl
def register_slices(register):
    register(Sticky)


@hookimpl
def startup(host):
    asyncio.get_running_loop().call_later(0.05, asyncio.ensure_future, host.call("sticky.wait"))
"""


def test_after_sigterm_the_drain_and_slow_stops_are_cut_to_fit_the_stop_timeout(tmp_path):
    # drain_timeout (30 s) and each slice's stop (stop_timeout) would together take far longer than
    # the 3 s the process has: both are cut, the stop still completes, and serve exits 0
    served = Served(
        tmp_path,
        [("rb-sticky", "rb_sticky", SLOW_TO_STOP)],
        env={"RB_STOP_TIMEOUT": "3", "RB_DRAIN_TIMEOUT": "30"},
    )
    served.wait_for("refactorbot serving 2 slice(s)")
    served.wait_for("in flight")
    served.proc.send_signal(signal.SIGTERM)
    status, output = served.ended(timeout=20)  # uncut, the drain alone would take 30 s
    assert status == 0, output
    assert "refactorbot stopped." in output and "did not stop within" not in output
    state = dict(
        sqlite3.connect(served.home / "master.db").execute("SELECT slice_id, error FROM slice_state").fetchall()
    )
    assert state["sticky"].startswith("stop timed out after ")
    assert state["good"] is None
