"""``kill -9`` of ``refactorbot serve`` during a burst of logged operations loses no committed row."""

import os
import signal
import sqlite3
import subprocess
import sys
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
        deadline = time.monotonic() + 30
        seen = None
        while time.monotonic() < deadline:
            time.sleep(0.2)
            if (home / "slices" / "burst.db").exists() and (home / "master.db").exists():
                try:
                    seen = counts(home)
                except sqlite3.OperationalError:
                    continue
                if seen["operation_log"][0] > 2000 and seen["ticks"][0] > 2000:
                    break
        assert seen and seen["operation_log"][0] > 2000, (seen, proc.stderr.read1() if proc.poll() is not None else "")
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
