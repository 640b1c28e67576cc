"""The durable event bus in a real `refactorbot serve`: events published over the API survive `kill -9`.

A sink slice (a plugin installed for the test on PYTHONPATH, found through its entry point like any
other) records every event it is delivered in its own SQLite file. Publishers post
`eventbus.publish` over HTTP from several threads; the server is killed with SIGKILL while they
run. Then: every database in the home passes `PRAGMA integrity_check`, every event whose publish
was answered is in the log with its payload, and after a restart the sink receives every one of
them (at least once).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import textwrap
import threading
from pathlib import Path
from typing import Any

import httpx
from serving import clean_env, serve, wait_until, write_config

SINK = textwrap.dedent(
    '''
    """A slice that records each delivered event in its own SQLite file."""
    from typing import Any

    from refactorbot import AtomicSlice, Event, SliceDatabase, hookimpl, subscribe


    class SinkSlice(AtomicSlice):
        slice_id = "sink"
        uses_database = False

        async def initialize(self) -> None:
            self.store = SliceDatabase(self.ctx.data_dir / "sink.db")
            await self.store.open()
            await self.store.execute(
                'CREATE TABLE IF NOT EXISTS seen ("offset" INTEGER NOT NULL, n INTEGER NOT NULL, at REAL NOT NULL)'
            )

        async def shutdown(self) -> None:
            await self.store.close()

        @subscribe("load.*")
        async def on_load(self, event: Event) -> None:
            await self.store.execute(
                'INSERT INTO seen ("offset", n, at) VALUES (?, ?, ?)',
                (event.offset, event.payload["n"], event.published_at),
            )


    @hookimpl
    def register_slices(register: Any) -> None:
        register(SinkSlice)
    '''
)


def install_sink(site: Path) -> None:
    site.mkdir()
    (site / "rbsink.py").write_text(SINK)
    info = site / "rbsink-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: rbsink\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[refactorbot]\nsink = rbsink\n")


def env_for(home: Path, site: Path) -> dict[str, str]:
    return clean_env(
        RB_HOME=str(home),
        RB_LOAD_PLUGINS="refactorbot-api,refactorbot-slice-eventbus,rbsink",
        PYTHONPATH=os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])),
    )


def integrity(home: Path) -> dict[str, str]:
    verdicts = {}
    for path in [home / "master.db", *sorted((home / "slices").glob("*.db"))]:
        with contextlib.closing(sqlite3.connect(path)) as conn:
            verdicts[path.name] = conn.execute("PRAGMA integrity_check").fetchone()[0]
    return verdicts


def test_kill_9_mid_stream_loses_no_published_event(tmp_path: Path) -> None:
    home, site = tmp_path / "home", tmp_path / "site"
    home.mkdir(mode=0o700)
    install_sink(site)
    write_config(home, "[core]\nhealth_interval = 3600\n")
    env = env_for(home, site)
    acked: dict[int, int] = {}  # n -> offset, for every publish the server answered
    lock = threading.Lock()
    enough = threading.Event()
    stop = threading.Event()

    with serve(home, env=env) as served:
        proc = served.proc

        def publisher(worker: int) -> None:
            with httpx.Client(base_url=served.url, headers=served.headers, trust_env=False, timeout=30) as client:
                i = 0
                while not stop.is_set():
                    n = worker * 1_000_000 + i
                    i += 1
                    try:
                        answer = client.post(
                            "/slices/eventbus/operations/publish", json={"topic": "load.tick", "payload": {"n": n}}
                        ).json()
                    except httpx.HTTPError:
                        return  # the server is gone: this publish was never answered
                    if answer.get("success"):
                        with lock:
                            acked[n] = answer["data"]["offset"]
                            if len(acked) >= 600:
                                enough.set()

        threads = [threading.Thread(target=publisher, args=(w,)) for w in range(8)]
        for thread in threads:
            thread.start()
        try:
            assert enough.wait(120), "publishers did not get 600 answers"
            os.kill(proc.pid, signal.SIGKILL)  # mid-stream: eight publishers are still posting
            proc.wait(30)
        finally:
            stop.set()
            for thread in threads:
                thread.join(60)
        assert proc.returncode == -signal.SIGKILL

    assert set(integrity(home).values()) == {"ok"}, integrity(home)
    with contextlib.closing(sqlite3.connect(home / "slices" / "eventbus.db")) as conn:
        stored = {
            json.loads(payload)["n"]: offset
            for offset, payload in conn.execute("SELECT \"offset\", payload FROM events WHERE topic = 'load.tick'")
        }
    missing = {n: o for n, o in acked.items() if stored.get(n) != o}
    assert not missing, f"{len(missing)} answered publishes are not in the log: {sorted(missing.items())[:5]}"

    # Restarted, the sink gets every answered event: what it had acknowledged before the kill, and the rest now.
    with serve(home, env=env) as served:
        proc = served.proc

        def sink() -> dict[str, Any]:
            return next(s for s in served.call("eventbus.stats")["subscribers"] if s["name"] == "sink.on_load")

        wait_until(lambda: sink()["acked_offset"] >= max(stored.values()), timeout=120, explain=sink)
    assert proc.returncode == 0, (home / "serve.log").read_text()[-2000:]
    with contextlib.closing(sqlite3.connect(home / "slices" / "sink.db")) as conn:
        seen = {(n, offset) for offset, n in conn.execute('SELECT "offset", n FROM seen')}
    assert {(n, o) for n, o in acked.items()} <= seen
    assert set(integrity(home).values()) == {"ok"}
