"""Singletons across real processes: two `refactorbot serve` hosts on one Redis, one of them killed with SIGKILL.

Each host has its own home and the same ``[plugins.redis]`` (a short ``lock_ttl``), as two machines
of one deployment would. The scheduler's timer and a polling Telegram channel must run on one host
at a time; when that host dies without a word, the other takes over within ``lock_ttl`` plus one
try (``lock_ttl / 3``), and no piece of work runs on both.

Which process polls Telegram is read the way the kernel knows it: the loopback Bot API notes the
peer port of every request, and the test finds the process that owns that socket in ``/proc``.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import httpx
import pytest
from refactorbot.testing import ModelServer
from refactorbot.testing.platforms import PlatformRequest, PlatformResponse
from refactorbot.testing.telegram import TelegramServer
from refactorbot_bus_redis.testing import RedisServer, RedisServerMissing
from serving import QUICK_SENDS, Served, clean_env, cli, echo_model, last_user, serve, wait_until, write_config

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


def lock_holder(redis: RedisServer, namespace: str, name: str) -> str:
    """Return who holds the lease ``name``, as ``redis-cli GET rb:{ns}:lock:<name>`` shows it (``<owner> <token>``)."""
    import redis as redis_py

    client = redis_py.Redis.from_url(redis.url)
    try:
        held = client.get(f"rb:{{{namespace}}}:lock:{name}")
    finally:
        client.close()
    assert held is not None, f"nobody holds {name}"
    return held.decode() if isinstance(held, bytes) else str(held)


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


# -- a polling Telegram channel -------------------------------------------------------------------


def children() -> set[int]:
    """Return the pids of this process's children (the `refactorbot serve` processes)."""
    found: set[int] = set()
    for task in Path("/proc/self/task").iterdir():
        with contextlib.suppress(OSError):
            found.update(int(pid) for pid in (task / "children").read_text().split())
    return found


def socket_owner(client_port: int, server_port: int) -> int | None:
    """Return the pid of the child process whose TCP socket 127.0.0.1:``client_port`` talks to ``server_port``."""
    wanted = (f"0100007F:{client_port:04X}", f"0100007F:{server_port:04X}")
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if (fields[1], fields[2]) == wanted:
            inode = fields[9]
            break
    if inode is None:
        return None
    for pid in children():
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) == f"socket:[{inode}]":
                        return pid
    return None


class WhoCalls(TelegramServer):
    """The loopback Bot API, noting which process sent each request: ``callers`` holds ``(method, pid)``."""

    def __init__(self, token: str) -> None:
        self.callers: list[tuple[str, int | None]] = []
        self._peer = threading.local()
        super().__init__(token, username="cluster_bot")

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        base: Any = super().handler_class()
        server = self

        class Handler(base):  # type: ignore[misc, valid-type]
            def _serve(self) -> None:
                server._peer.port = self.client_address[1]
                super()._serve()

            do_GET = do_POST = _serve

        return Handler

    def _dispatch(self, request: PlatformRequest) -> PlatformResponse:
        pid = socket_owner(self._peer.port, self.port)
        with self._changed:
            self.callers.append((request.path.rsplit("/", 1)[-1], pid))
        return super()._dispatch(request)

    def pids(self, method: str, since: int = 0) -> set[int | None]:
        """Return the processes that called ``method`` (from the ``since``-th request on)."""
        with self._changed:
            return {pid for m, pid in self.callers[since:] if m == method}


@dataclass
class ChannelServed(Served):
    telegram: WhoCalls


def telegram_status(served: Served) -> str:
    channels = served.call("communication.channels")["channels"]
    return str(next(c["status"] for c in channels if c["name"] == "telegram"))


def test_a_polling_telegram_channel_runs_on_one_process_and_moves_when_it_is_killed(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    namespace = f"cluster{secrets.token_hex(3)}"
    with ModelServer(responder=echo_model({})) as model, WhoCalls(TOKEN) as telegram:
        channel = (
            f'[channels.telegram]\napi_base = "{telegram.url}"\npoll_timeout = 5\nbackoff = 0.1\n'
            f'dm_policy = "allowlist"\nallow_senders = ["{OWNER}"]\n'
        )
        homes = [tmp_path / "a", tmp_path / "b"]
        for home in homes:
            write_config(home, QUIET + QUICK_SENDS + channel + redis_toml(redis_server, namespace), model=model)
        env = clean_env("TELEGRAM_", TELEGRAM_BOT_TOKEN=TOKEN)
        with (
            serve(homes[0], env=env, kind=ChannelServed, model=model, telegram=telegram) as first,
            serve(homes[1], env=env, kind=ChannelServed, model=model, telegram=telegram) as second,
        ):
            hosts = [first, second]
            states = lambda: [telegram_status(s) for s in hosts]  # noqa: E731
            wait_until(lambda: sorted(states()) == ["running", "standby"], explain=states)
            poller_i = states().index("running")
            poller, standby = hosts[poller_i], hosts[1 - poller_i]
            telegram.wait_until(lambda: bool(telegram.calls("getUpdates")), timeout=60)

            # Only the holder talks to Telegram; the other shows standby and who holds the channel.
            assert telegram.pids("getUpdates") == {poller.proc.pid}
            assert {pid for _, pid in telegram.callers} == {poller.proc.pid}
            held = lock_holder(redis_server, namespace, "channel.telegram")
            assert f":{poller.proc.pid}:" in held, held
            listed = cli(standby.home, "channels", env=env)
            assert listed.returncode == 0, listed.stderr
            (line,) = [
                line for line in listed.stdout.splitlines() if line.split()[:3] == ["telegram", "yes", "standby"]
            ]
            assert "(held by " in line and f":{poller.proc.pid}:" in line, line

            asked = telegram.user_message("first", chat_id=OWNER, sender_id=OWNER)
            telegram.wait_for_messages(OWNER, 1, timeout=60)
            telegram.wait_for_confirmed(asked["update_id"], timeout=60)
            assert [m["text"] for m in telegram.sent(OWNER)] == ["echo: first"]
            assert model_turns(model).count("first") == 1
            assert telegram.pids("sendMessage") == {poller.proc.pid}

            mark = len(telegram.callers)
            poller.kill()
            wait_until(lambda: telegram_status(standby) == "running", timeout=30, explain=standby.log)
            telegram.wait_until(lambda: standby.proc.pid in telegram.pids("getUpdates", mark), timeout=30)
            assert telegram.pids("getUpdates", mark) <= {standby.proc.pid, None}  # None: the dead one's last poll

            asked = telegram.user_message("second", chat_id=OWNER, sender_id=OWNER)
            telegram.wait_for_messages(OWNER, 2, timeout=60)
            telegram.wait_for_confirmed(asked["update_id"], timeout=60)
            later = telegram.user_message("third", chat_id=OWNER, sender_id=OWNER)
            telegram.wait_for_messages(OWNER, 3, timeout=60)
            telegram.wait_for_confirmed(later["update_id"], timeout=60)
            assert [m["text"] for m in telegram.sent(OWNER)] == ["echo: first", "echo: second", "echo: third"]
            assert model_turns(model).count("second") == 1
            assert telegram.pids("sendMessage", mark) == {standby.proc.pid}


def model_turns(model: ModelServer) -> list[str]:
    return [last_user(r) for r in model.requests]
