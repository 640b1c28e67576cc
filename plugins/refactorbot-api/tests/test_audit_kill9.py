"""The audit trail behind the API's answers.

``kill -9`` while clients run operations loses no answered operation, and an answer never claims
success for rows that could not be written.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import refactorbot_api.plugin
from api_sample import CONFIG
from pydantic import BaseModel
from refactorbot import AtomicSlice, hookimpl, operation
from refactorbot.testing import host_running

AUDIT = '''
from pydantic import BaseModel
from refactorbot import AtomicSlice, hookimpl, operation

REFACTORBOT_API = 1


class Tick(BaseModel):
    n: int


class AuditSlice(AtomicSlice):
    slice_id = "audit"

    async def initialize(self):
        await super().initialize()
        await self.db.execute("CREATE TABLE IF NOT EXISTS ticks (n INTEGER PRIMARY KEY)")
        self.writer = self.db.batch_writer("INSERT INTO ticks (n) VALUES (?)")  # batched, 50 ms

    @operation
    async def tick(self, params: Tick) -> int:
        """Record one tick in a batch (the answer does not wait for it here)."""
        self.writer.add((params.n,))
        return params.n


@hookimpl
def register_slices(register):
    register(AuditSlice)
'''


def _install(site: Path) -> None:
    site.mkdir()
    (site / "rb_audit.py").write_text(AUDIT)
    info = site / "rb_audit-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: rb-audit\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[refactorbot]\naudit = rb_audit\n")


def test_kill_9_loses_no_operation_the_api_answered(tmp_path: Path) -> None:
    site, home = tmp_path / "site", tmp_path / "home"
    _install(site)
    home.mkdir()
    (home / "refactorbot.toml").write_text("[core]\nhealth_interval = 3600\n[plugins.api]\nport = 0\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RB_")}
    env.update({"PYTHONPATH": str(site), "RB_HOME": str(home), "RB_LOAD_PLUGINS": "rb-audit,refactorbot-api"})
    with open(tmp_path / "serve.log", "wb") as output:
        proc = subprocess.Popen(
            [sys.executable, "-m", "refactorbot", "serve"],
            env=env,
            stdout=output,
            stderr=output,
            start_new_session=True,
        )
    acked: list[tuple[int, str]] = []
    stop = threading.Event()

    def client(worker: int, url: str, token: str) -> None:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=10) as http:
            for i in range(1_000_000):
                if stop.is_set():
                    return
                n = worker * 1_000_000 + i
                try:
                    answer = http.post("/slices/audit/operations/tick", json={"n": n})
                except httpx.HTTPError:
                    return  # the server is gone
                if answer.status_code == 200 and answer.json()["success"]:
                    acked.append((n, answer.json()["request_id"]))  # acknowledged to us

    threads: list[threading.Thread] = []
    try:
        deadline = time.monotonic() + 60
        while not (home / "server.json").exists():
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "serve.log").read_text()[-3000:]
            time.sleep(0.05)
        url = json.loads((home / "server.json").read_text())["url"]
        token = (home / "api-token").read_text().strip()
        threads = [threading.Thread(target=client, args=(w, url, token), daemon=True) for w in range(8)]
        for thread in threads:
            thread.start()
        while len(acked) < 1500:
            assert proc.poll() is None and time.monotonic() < deadline, (
                len(acked),
                (tmp_path / "serve.log").read_text(),
            )
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)  # while eight clients are mid-request
        proc.wait(timeout=10)
    finally:
        stop.set()
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        for thread in threads:
            thread.join(15)
    con = sqlite3.connect(home / "master.db")
    logged = {row[0] for row in con.execute("SELECT request_id FROM operation_log")}
    con.close()
    con = sqlite3.connect(home / "slices" / "audit.db")
    ticks = {row[0] for row in con.execute("SELECT n FROM ticks")}
    con.close()
    unlogged = [rid for _, rid in acked if rid not in logged]
    lost = [n for n, _ in acked if n not in ticks]
    assert not unlogged, f"{len(unlogged)} of {len(acked)} answered operations have no operation_log row"
    assert not lost, f"{len(lost)} of {len(acked)} answered ticks are not in the slice's database"


class Strict(BaseModel):
    n: int | None = None


class StrictSlice(AtomicSlice):
    """Batches rows into a NOT NULL column: a null makes its batch fail."""

    slice_id = "strict"

    async def initialize(self) -> None:
        await super().initialize()
        assert self.db is not None
        await self.db.execute("CREATE TABLE IF NOT EXISTS rows (n INTEGER NOT NULL)")
        self.writer = self.db.batch_writer("INSERT INTO rows (n) VALUES (?)")

    @operation
    async def put(self, params: Strict) -> None:
        """Queue one row."""
        self.writer.add((params.n,))


class StrictPlugin:
    REFACTORBOT_API = 1

    @hookimpl
    def register_slices(self, register: Any) -> None:
        register(StrictSlice)


@pytest.mark.asyncio
async def test_an_answer_whose_rows_could_not_be_written_is_500_not_a_success(tmp_path: Path) -> None:
    async with host_running(tmp_path, [StrictPlugin(), refactorbot_api.plugin], config=CONFIG):
        info = json.loads((tmp_path / "server.json").read_text())
        headers = {"Authorization": f"Bearer {(tmp_path / 'api-token').read_text().strip()}"}
        async with httpx.AsyncClient(base_url=info["url"], headers=headers, timeout=10) as client:
            failed = await client.post("/slices/strict/operations/put", json={"n": None})
            assert failed.status_code == 500
            assert failed.json()["detail"].startswith(
                "internal error: the request ran, but its audit-log rows were not written: strict.db: 1 rows not written"
            )
            fine = await client.post("/slices/strict/operations/put", json={"n": 1})  # not blamed for the earlier one
            assert fine.status_code == 200 and fine.json()["success"]
