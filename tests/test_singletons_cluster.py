"""Singletons across real processes: two `refactorbot serve` hosts on one Redis, one of them killed with SIGKILL.

Each host has its own home and the same ``[plugins.redis]`` (a short ``lock_ttl``), as two machines
of one deployment would. The scheduler's timer and a polling Telegram channel must run on one host
at a time; when that host dies without a word, the other takes over within ``lock_ttl`` plus one
try (``lock_ttl / 3``), and no piece of work runs on both.

Which process polls Telegram is read the way the kernel knows it: the loopback Bot API notes the
peer port of every request, and the test finds the process that owns that socket in ``/proc``.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from refactorbot_bus_redis.testing import RedisServer, RedisServerMissing
from serving import Served, cli, serve, wait_until, write_config

#: Seconds a lease's lock outlives its holder's last renewal; renewed (and tried) every third of it.
TTL = 2.0
#: What may pass between taking the lease and the first fire being claimed on the new holder: a
#: Redis script, a SQLite transaction and the loop's turns, on a shared 2-core machine.
FIRST_FIRE = 1.0
TOKEN = "7000003:cluster-token-AbCdEfGhIjKlMnOpQrSt"
OWNER = 515151
QUIET = "[core]\nhealth_interval = 3600\n[slices.scheduling]\nheartbeat_every = 0\nalerts_every = 0\ndiagnostics_every = 0\n"


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    try:
        server = RedisServer(tmp_path_factory.mktemp("redis"))
    except RedisServerMissing as exc:
        pytest.fail(str(exc))
    server.start()
    yield server
    server.stop()


def redis_toml(redis: RedisServer, namespace: str) -> str:
    return f'[plugins.redis]\nurl = "{redis.url}"\nnamespace = "{namespace}"\nlock_ttl = {TTL}\n'


def add(served: Served, job: dict[str, Any]) -> None:
    """Add a scheduled job on ``served`` through the control API."""
    answer = httpx.post(
        f"{served.url}/slices/scheduling/operations/add", json=job, headers=served.headers, trust_env=False, timeout=30
    ).json()
    assert answer["success"], answer


def runs(served: Served, job: str) -> list[dict[str, Any]]:
    """Return the scheduled (not manual) runs of ``job`` on ``served``, oldest first."""
    return ran(served.call("scheduling.history", name=job, limit=1000)["runs"])


def ran(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Keep the runs that were claimed on schedule (not manual, not recorded as skipped), oldest first."""
    kept = (r for r in found if r["trigger"] != "manual" and r["status"] != "skipped")
    return sorted(kept, key=lambda r: r["scheduled_for"])


def recorded_runs(home: Path, job: str) -> list[dict[str, Any]]:
    """Return the scheduled runs of ``job`` recorded in ``home`` (read by the CLI: its server may be dead)."""
    done = cli(home, "call", "scheduling.history", f"name={job}", "limit=1000")
    assert done.returncode == 0, done.stderr
    return ran(json.loads(done.stdout)["runs"])


def health_details(served: Served, slice_id: str) -> dict[str, Any]:
    """Return the health details ``GET /slices/<id>`` reports for a slice."""
    answer = httpx.get(f"{served.url}/slices/{slice_id}", headers=served.headers, trust_env=False, timeout=30)
    answer.raise_for_status()
    details: dict[str, Any] = answer.json()["health"]["details"]
    return details


# -- the scheduler's timer ------------------------------------------------------------------------


def test_the_timer_fires_on_one_process_and_moves_to_the_other_when_its_holder_is_killed(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    namespace = f"cluster{secrets.token_hex(3)}"
    homes = [tmp_path / "a", tmp_path / "b"]
    for home in homes:
        write_config(home, QUIET + redis_toml(redis_server, namespace))
    target = {"type": "operation", "operation": "scheduling.status"}
    with serve(homes[0]) as first, serve(homes[1]) as second:
        hosts = [first, second]
        for served in hosts:  # the same job on both hosts, as the documentation says to add it
            add(served, {"name": "tick", "every": "1", "target": target})

        def statuses() -> list[dict[str, Any]]:
            return [s.call("scheduling.status") for s in hosts]

        wait_until(lambda: sorted(s["timer"] for s in statuses()) == ["held", "standby"], explain=statuses)
        holder_i = next(i for i, s in enumerate(statuses()) if s["timer"] == "held")
        holder, standby = hosts[holder_i], hosts[1 - holder_i]
        wait_until(lambda: len(runs(holder, "tick")) >= 3, explain=lambda: runs(holder, "tick"))
        assert runs(standby, "tick") == []
        waiting = standby.call("scheduling.status")
        assert waiting["timer"] == "standby"
        assert f":{holder.proc.pid}:" in waiting["timer_holder"], waiting  # names the holding process

        killed_at = time.time()
        holder.kill()
        wait_until(lambda: runs(standby, "tick"), timeout=30, explain=lambda: standby.log())
        took = runs(standby, "tick")[0]["claimed_at"] - killed_at
        # The lock outlives the last renewal (at most TTL/3 before the kill) by TTL, and the
        # survivor tries every TTL/3: it cannot take over sooner than 2/3 TTL nor later than 4/3 TTL.
        assert TTL * 2 / 3 <= took <= TTL + TTL / 3 + FIRST_FIRE, took
        assert standby.call("scheduling.status")["timer"] == "held"
        # The fires due while nobody held the timer follow the job's misfire policy (run once):
        # the survivor's first fire is the last second the dead holder missed, not the next one.
        first_fire = runs(standby, "tick")[0]
        assert first_fire["trigger"] == "misfire", first_fire
        assert killed_at < first_fire["scheduled_for"] <= first_fire["claimed_at"], first_fire

        wait_until(lambda: len(runs(standby, "tick")) >= 3)
        before, after = recorded_runs(holder.home, "tick"), runs(standby, "tick")
        # Each host's job is anchored where it was added, so the hosts' scheduled times differ by a
        # fraction of a second: a second of the timeline in which both fired would be a double fire.
        seconds_before = {int(r["scheduled_for"]) for r in before}
        seconds_after = {int(r["scheduled_for"]) for r in after}
        assert not seconds_before & seconds_after, sorted(seconds_before & seconds_after)
        assert max(r["claimed_at"] for r in before) < killed_at < min(r["claimed_at"] for r in after)
        assert len(seconds_after) == len(after)  # the survivor fired each second once
