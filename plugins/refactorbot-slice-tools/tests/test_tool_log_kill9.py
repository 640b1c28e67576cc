"""``kill -9`` of ``refactorbot serve`` while tools run: every call a caller got an answer for is in the tool log."""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

DRIVER = '''
import asyncio
import sys
from pydantic import BaseModel
from refactorbot import AtomicSlice, hookimpl
from refactorbot.tools import Tool, ToolResult

REFACTORBOT_API = 1


class NoParams(BaseModel):
    pass


class Tap(Tool):
    name = "tap"
    description = "Do nothing."
    Params = NoParams

    async def run(self, params, ctx):
        return ToolResult(output="ok")


class Driver(AtomicSlice):
    """Calls tools.execute ten at a time and prints each call id once the call has answered."""

    slice_id = "driver"
    requires = ("tools",)
    uses_database = False

    async def start(self):
        self.task = asyncio.get_running_loop().create_task(self.drive())

    async def stop(self):
        self.task.cancel()

    async def one(self, n):
        result = await self.ctx.call("tools.execute", tool="tap", call_id=f"c{n}")
        if result["ok"]:
            sys.stdout.write(f"ack c{n}\\n")
            sys.stdout.flush()

    async def drive(self):
        n = 0
        while True:
            await asyncio.gather(*(self.one(n + i) for i in range(10)))
            n += 10


@hookimpl
def register_slices(register):
    register(Driver)


@hookimpl
def register_tools(register):
    register(Tap)
'''


def _install(site: Path) -> None:
    site.mkdir()
    (site / "rb_driver.py").write_text(DRIVER)
    info = site / "rb_driver-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: rb-driver\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[refactorbot]\ndriver = rb_driver\n")


def test_kill_9_loses_no_answered_tool_call(tmp_path: Path) -> None:
    site, home = tmp_path / "site", tmp_path / "home"
    _install(site)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RB_")}
    env.update({"PYTHONPATH": str(site), "RB_HOME": str(home), "RB_LOAD_PLUGINS": "rb-driver,refactorbot-slice-tools"})
    with open(tmp_path / "stderr.txt", "wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "refactorbot", "serve"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=stderr,
            start_new_session=True,
        )
    assert proc.stdout is not None
    lines: queue.Queue[bytes] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout or ()], daemon=True)
    reader.start()
    acked: list[str] = []

    def take(line: bytes) -> None:
        if line.startswith(b"ack ") and line.endswith(b"\n"):
            acked.append(line.split()[1].decode())

    try:
        deadline = time.monotonic() + 60
        while len(acked) < 3000:
            left = deadline - time.monotonic()
            assert left > 0 and proc.poll() is None, (len(acked), (tmp_path / "stderr.txt").read_text()[-3000:])
            with contextlib.suppress(queue.Empty):
                take(lines.get(timeout=min(left, 1.0)))
        os.kill(proc.pid, signal.SIGKILL)  # in the middle of the calls
        proc.wait(timeout=10)
        reader.join(10)
        while not lines.empty():
            take(lines.get())  # answered before the kill too
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        proc.stdout.close()
    con = sqlite3.connect(home / "slices" / "tools.db")
    logged = {row[0] for row in con.execute("SELECT call_id FROM tool_executions")}
    con.close()
    missing = [call_id for call_id in acked if call_id not in logged]
    assert not missing, f"{len(missing)} of {len(acked)} answered tool calls are not in the tool log"
