"""``kill -9`` of ``refactorbot serve`` during a burst of logged operations loses no committed row."""

import contextlib
import os
import queue
import signal
import sqlite3
import subprocess
import sys
import threading
import time

from distfactory import make_dist

BURST = '''
import asyncio
from pydantic import BaseModel
from refactorbot import AtomicSlice, hookimpl, operation

REFACTORBOT_API = 1


class Tick(BaseModel):
    n: int


class BurstSlice(AtomicSlice):
    slice_id = "burst"

    async def initialize(self):
        await super().initialize()
        await self.db.execute("CREATE TABLE IF NOT EXISTS ticks (n INTEGER PRIMARY KEY)")
        self.writer = self.db.batch_writer("INSERT INTO ticks (n) VALUES (?)", max_batch=200, interval=0.005)

    async def start(self):
        self.task = asyncio.get_running_loop().create_task(self.burst())

    async def stop(self):
        self.task.cancel()

    async def burst(self):
        n = 0
        while True:
            for _ in range(50):
                n += 1
                await self.ctx.call("burst.tick", n=n)
            await asyncio.sleep(0)

    @operation
    async def tick(self, params: Tick) -> int:
        """Record one tick."""
        self.writer.add((params.n,))
        return params.n


@hookimpl
def register_slices(register):
    register(BurstSlice)
'''


def counts(home):
    result = {}
    for path, table in ((home / "master.db", "operation_log"), (home / "slices" / "burst.db", "ticks")):
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            result[table] = (
                con.execute(f"SELECT count(*), coalesce(max(id), 0) FROM {table}").fetchone()
                if table == "operation_log"
                else con.execute("SELECT count(*), coalesce(max(n), 0) FROM ticks").fetchone()
            )
        finally:
            con.close()
    return result


def test_kill_9_during_a_burst_loses_no_committed_row(tmp_path):
    site = tmp_path / "site"
    make_dist(site, "rb-burst", "rb_burst", BURST)
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RB_")}
    env.update({"PYTHONPATH": str(site), "RB_HOME": str(home), "RB_LOAD_PLUGINS": "rb-burst"})
    proc = subprocess.Popen(
        [sys.executable, "-m", "refactorbot", "serve"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120  # a guard against a hang; the loop ends on the rows
        seen = None
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
            if (home / "slices" / "burst.db").exists() and (home / "master.db").exists():
                try:
                    seen = counts(home)
                except sqlite3.OperationalError:
                    continue
                if seen["operation_log"][0] > 2000 and seen["ticks"][0] > 2000:
                    break
        if not (seen and seen["operation_log"][0] > 2000 and seen["ticks"][0] > 2000):
            proc.kill()
            _, err = proc.communicate(timeout=10)
            raise AssertionError(f"no burst of committed rows: {seen}; serve said: {err.decode()[-3000:]}")
        seen = counts(home)  # rows committed right now, read by another connection
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    after = counts(home)
    for table in ("operation_log", "ticks"):
        assert after[table][0] >= seen[table][0], (table, seen, after)
        assert after[table][1] >= seen[table][1]
    for path in (home / "master.db", home / "slices" / "burst.db"):
        con = sqlite3.connect(path)
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        con.close()
    # ticks are numbered 1..n without holes: every committed batch is whole
    con = sqlite3.connect(home / "slices" / "burst.db")
    count, top = con.execute("SELECT count(*), max(n) FROM ticks").fetchone()
    assert count == top


ACKED = '''
import asyncio
import sys
from pydantic import BaseModel
from refactorbot import AtomicSlice, SliceRequest, hookimpl, operation
from refactorbot.database import committed

REFACTORBOT_API = 1


class Tick(BaseModel):
    n: int


class AckSlice(AtomicSlice):
    slice_id = "acks"

    async def initialize(self):
        await super().initialize()
        await self.db.execute("CREATE TABLE IF NOT EXISTS ticks (n INTEGER PRIMARY KEY)")
        self.writer = self.db.batch_writer("INSERT INTO ticks (n) VALUES (?)")

    async def start(self):
        self.task = asyncio.get_running_loop().create_task(self.burst())

    async def stop(self):
        self.task.cancel()

    async def one(self, n):
        response = await self.ctx.host.route(SliceRequest(slice_id="acks", operation="tick", payload={"n": n}))
        await committed()  # the acknowledgement barrier
        sys.stdout.write(f"{n} {response.request_id}\\n")
        sys.stdout.flush()

    async def burst(self):
        n = 0
        while True:
            await asyncio.gather(*(self.one(n + i) for i in range(1, 21)))
            n += 20

    @operation
    async def tick(self, params: Tick) -> int:
        """Record one tick; answer once it is committed."""
        await self.writer.write((params.n,))
        return params.n


@hookimpl
def register_slices(register):
    register(AckSlice)
'''


def acks(lines):
    """Return ``(n, request_id)`` of each whole acknowledgement line (``serve`` prints other lines too)."""
    fields = [line.split() for line in lines if line.endswith(b"\n")]
    return [(int(f[0]), f[1].decode()) for f in fields if len(f) == 2 and f[0].isdigit()]


def test_kill_9_loses_no_acknowledged_row(tmp_path):
    """Rows awaited with ``BatchWriter.write`` / ``committed()`` before an acknowledgement survive ``kill -9``."""
    site = tmp_path / "site"
    make_dist(site, "rb-acks", "rb_acks", ACKED)
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RB_")}
    env.update({"PYTHONPATH": str(site), "RB_HOME": str(home), "RB_LOAD_PLUGINS": "rb-acks"})
    with open(tmp_path / "stderr.txt", "wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "refactorbot", "serve"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=stderr,
            start_new_session=True,
        )
    lines: queue.Queue[bytes] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True)
    reader.start()
    acked = []
    try:
        deadline = time.monotonic() + 60
        while len(acked) < 3000:
            left = deadline - time.monotonic()
            assert left > 0 and proc.poll() is None, (len(acked), (tmp_path / "stderr.txt").read_text()[-2000:])
            with contextlib.suppress(queue.Empty):
                acked += acks([lines.get(timeout=min(left, 1.0))])
        os.kill(proc.pid, signal.SIGKILL)  # in the middle of the burst
        proc.wait(timeout=10)
        reader.join(10)  # every line written before the kill was an acknowledgement too
        while not lines.empty():
            acked += acks([lines.get()])
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        proc.stdout.close()
    con = sqlite3.connect(home / "slices" / "acks.db")
    ticks = {row[0] for row in con.execute("SELECT n FROM ticks")}
    con.close()
    con = sqlite3.connect(home / "master.db")
    logged = {row[0] for row in con.execute("SELECT request_id FROM operation_log WHERE operation = 'tick'")}
    con.close()
    assert {n for n, _ in acked} <= ticks
    missing = [rid for _, rid in acked if rid not in logged]
    assert not missing, f"{len(missing)} of {len(acked)} acknowledged operations have no operation_log row"
