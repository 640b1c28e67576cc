"""``refactorbot worker`` as a real process: it serves a slice, refuses bad input, and a killed one's requests move on."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import redis_config
from refactorbot.models import SliceRequest
from refactorbot_bus_redis.testing import RedisServer
from refactorbot_bus_redis.transport import RequestClient

pytestmark = pytest.mark.asyncio

TESTS = Path(__file__).parent

SLOW = '''
import asyncio
from pathlib import Path
from typing import Any
from pydantic import BaseModel
from refactorbot import AtomicSlice, hookimpl, operation

class Job(BaseModel):
    key: str

class SlowSlice(AtomicSlice):
    slice_id = "slow"
    uses_database = False

    @operation
    async def run(self, params: Job) -> str:
        """Note the key, then take a moment."""
        with open(Path(self.ctx.home) / "started.txt", "a") as out:
            out.write(params.key + "\\n")
        await asyncio.sleep(0.05)
        with open(Path(self.ctx.home) / "finished.txt", "a") as out:
            out.write(params.key + "\\n")
        return params.key

@hookimpl
def register_slices(register: Any) -> None:
    register(SlowSlice)
'''


def install_slow(site: Path) -> None:
    site.mkdir(exist_ok=True)
    (site / "rbslow.py").write_text(SLOW)
    info = site / "rbslow-0.1.0.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: rbslow\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[refactorbot]\nslow = rbslow\n")


def worker_env(site: Path, namespace: str, claim_idle: str = "0.5") -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RB_", "REFACTORBOT_"))}
    env.update(
        RB_LOAD_PLUGINS="refactorbot-bus-redis,rbslow",
        RB_REDIS_NAMESPACE=namespace,
        RB_REDIS_CLAIM_IDLE=claim_idle,
        PYTHONPATH=os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])),
    )
    return env


def start_worker(home: Path, url: str, env: dict[str, str]) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "refactorbot", "--home", str(home), "worker", "--slices", "slow", "--redis", url],
        env=env,
        stdout=subprocess.PIPE,
        stderr=open(home.parent / f"{home.name}.log", "w"),  # noqa: SIM115 - closed with the process
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()  # the ready line: the worker reads its streams from here on
    assert line.startswith("refactorbot worker serving slow from Redis at redis://127.0.0.1:"), line
    return process


def lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


async def test_bad_command_lines_fail_with_one_line(tmp_path: Path, namespace: str) -> None:
    env = worker_env(tmp_path / "site", namespace)
    for args, message in (
        (["--slices", " , ", "--redis", "redis://127.0.0.1:1/0"], "--slices: name at least one slice"),
        (["--slices", "a b", "--redis", "redis://127.0.0.1:1/0"], "is not a slice id"),
        (["--slices", "memory", "--redis", "http://x"], "--redis: "),
        (["--slices", "memory"], "no Redis to serve from"),
    ):
        done = subprocess.run(
            [sys.executable, "-m", "refactorbot", "--home", str(tmp_path / "h"), "worker", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode != 0
        assert message in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr


async def test_a_killed_workers_requests_are_answered_by_the_other_once(
    redis_server: RedisServer, namespace: str, tmp_path: Path
) -> None:
    site = tmp_path / "site"
    install_slow(site)
    env = worker_env(site, namespace)
    homes = [tmp_path / "a", tmp_path / "b"]
    workers = [start_worker(home, redis_server.url, env) for home in homes]
    sender = RequestClient(redis_config(redis_server.url, namespace), timeout=60)
    await sender.start()
    try:
        calls = [
            asyncio.create_task(
                sender.execute(SliceRequest(slice_id="slow", operation="run", payload={"key": f"k{i}"}))
            )
            for i in range(200)
        ]
        async with asyncio.timeout(60):  # kill the first worker once it has started some requests
            while len(lines(homes[0] / "started.txt")) < 5:
                await asyncio.sleep(0.005)
        workers[0].send_signal(signal.SIGKILL)
        workers[0].wait(timeout=30)
        answers = await asyncio.gather(*calls)
    finally:
        await sender.stop()
        for process in workers:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=60)
    failed = [a.error_message for a in answers if not a.success]
    assert not failed, failed[:3]
    assert sorted(a.data for a in answers) == sorted(f"k{i}" for i in range(200))
    finished = lines(homes[0] / "finished.txt") + lines(homes[1] / "finished.txt")
    assert len(finished) == len(set(finished)) or _only_unrecorded_repeats(homes, finished)
    assert set(finished) == {f"k{i}" for i in range(200)}
    assert lines(homes[1] / "started.txt"), "the second worker took over"
    assert workers[1].returncode == 0


def _only_unrecorded_repeats(homes: list[Path], finished: list[str]) -> bool:
    """A key that finished twice must have finished on the killed worker without its answer being recorded."""
    from collections import Counter

    twice = {k for k, n in Counter(finished).items() if n > 1}
    return all(k in lines(homes[0] / "finished.txt") for k in twice)
