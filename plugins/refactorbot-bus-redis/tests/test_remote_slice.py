"""``[slices.<id>] location = "redis"``: a ``refactorbot serve`` host routes the slice to ``refactorbot worker``."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from refactorbot_bus_redis.testing import RedisServer
from test_worker_command import install_slow, lines, start_worker, worker_env

pytestmark = pytest.mark.asyncio


def write_config(home: Path, url: str) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "refactorbot.toml").write_text(
        f'[plugins.redis]\nurl = "{url}"\n\n[plugins.api]\nport = 0\n\n[slices.slow]\nlocation = "redis"\n'
    )


def refactorbot(home: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "refactorbot", "--home", str(home), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_serve_routes_a_redis_slice_to_its_worker(
    redis_server: RedisServer, namespace: str, tmp_path: Path
) -> None:
    site = tmp_path / "site"
    install_slow(site)
    env = worker_env(site, namespace)
    env["RB_LOAD_PLUGINS"] += ",refactorbot-api"
    orchestrator, worker_home = tmp_path / "orchestrator", tmp_path / "worker"
    write_config(orchestrator, redis_server.url)
    write_config(worker_home, redis_server.url)  # the same configuration: the worker serves slow itself
    worker = start_worker(worker_home, redis_server.url, env)
    serve = subprocess.Popen(
        [sys.executable, "-m", "refactorbot", "--home", str(orchestrator), "serve"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=open(tmp_path / "serve.log", "w"),  # noqa: SIM115 - closed with the process
        text=True,
    )
    try:
        assert serve.stdout is not None
        ready = serve.stdout.readline()
        assert ready.startswith("refactorbot serving 1 slice(s)") and "slow" in ready, ready
        assert (orchestrator / "server.json").exists()

        done = refactorbot(orchestrator, env, "call", "slow.run", "key=through-serve")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == "through-serve"
        # run by the worker, in its home; the orchestrator never ran the slice's code
        assert lines(worker_home / "finished.txt") == ["through-serve"]
        assert not (orchestrator / "started.txt").exists()

        refused = refactorbot(orchestrator, env, "call", "slow.run", "nokey=1")
        assert refused.returncode == 1
        assert "key" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1, refused.stderr

        status = refactorbot(orchestrator, env, "slices", "--json")
        assert status.returncode == 0, status.stderr
        (row,) = [r for r in json.loads(status.stdout) if r["slice_id"] == "slow"]
        assert row["status"] == "running", row
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(timeout=60)
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
    assert serve.returncode == 0 and worker.returncode == 0
    # the orchestrator logged the routed request, as for a local slice; the invalid payload was
    # refused against the slice's own schema before anything was sent to the worker
    with sqlite3.connect(orchestrator / "master.db") as db:
        rows = db.execute("SELECT slice_id, operation, success FROM operation_log ORDER BY rowid").fetchall()
    assert [tuple(r) for r in rows] == [("slow", "run", 1)], rows
    assert lines(worker_home / "started.txt") == ["through-serve"]


async def test_a_redis_location_without_a_url_fails_the_slice_with_one_line(tmp_path: Path, namespace: str) -> None:
    site = tmp_path / "site"
    install_slow(site)
    env = worker_env(site, namespace)
    env.pop("RB_REDIS_URL", None)
    home = tmp_path / "home"
    home.mkdir()
    (home / "refactorbot.toml").write_text('[slices.slow]\nlocation = "redis"\n')
    done = refactorbot(home, env, "call", "slow.run", "key=x")
    assert done.returncode == 1
    assert 'location = "redis" needs [plugins.redis] url' in done.stderr, done.stderr


async def test_an_unknown_location_is_refused_by_name(tmp_path: Path, namespace: str) -> None:
    site = tmp_path / "site"
    install_slow(site)
    env = worker_env(site, namespace)
    home = tmp_path / "home"
    home.mkdir()
    (home / "refactorbot.toml").write_text('[slices.slow]\nlocation = "mars"\n')
    done = refactorbot(home, env, "call", "slow.run", "key=x")
    assert done.returncode == 1
    assert "location = 'mars': no installed plugin serves slices there" in done.stderr, done.stderr
