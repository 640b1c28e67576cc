"""Per-chat lanes: one job at a time per chat, in arrival order; chats run concurrently, up to a limit."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("refactorbot.slice.communication")

Job = Callable[[], Awaitable[None]]
Key = tuple[str, str]  # (channel, chat_id)


class _Lane:
    def __init__(self) -> None:
        self.jobs: collections.deque[Job] = collections.deque()
        self.reserved = 0
        self.running = False
        self.task: asyncio.Task[None] | None = None

    @property
    def waiting(self) -> int:
        return len(self.jobs) + self.reserved


class Lanes:
    """Run jobs per key, one at a time and in order, at most ``max_concurrent`` keys at once.

    A message first ``reserve``s a place (refused when ``max_queue`` jobs already wait), then is
    recorded, then ``submit``ted (or ``release``d when it turned out to be a duplicate).
    """

    def __init__(self, max_queue: int, max_concurrent: int) -> None:
        self.max_queue = max_queue
        self._lanes: dict[Key, _Lane] = {}
        self._slots = asyncio.Semaphore(max_concurrent)
        self._idle = asyncio.Event()
        self._idle.set()

    def reserve(self, key: Key) -> bool:
        """Hold a place in ``key``'s queue; False when it is full."""
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = _Lane()
            self._idle.clear()
        if lane.waiting >= self.max_queue:
            return False
        lane.reserved += 1
        return True

    def release(self, key: Key) -> None:
        """Give a reserved place back."""
        lane = self._lanes.get(key)
        if lane is not None:
            lane.reserved = max(0, lane.reserved - 1)
            self._forget_if_idle(key, lane)

    def submit(self, key: Key, job: Job) -> None:
        """Queue ``job`` in the place reserved for it; it runs after the jobs before it."""
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = _Lane()
            self._idle.clear()
        else:
            lane.reserved = max(0, lane.reserved - 1)
        lane.jobs.append(job)
        if lane.task is None:
            lane.task = asyncio.get_running_loop().create_task(self._run(key, lane), name=f"chat {key[0]}:{key[1]}")

    async def _run(self, key: Key, lane: _Lane) -> None:
        try:
            while lane.jobs:
                job = lane.jobs.popleft()
                async with self._slots:
                    lane.running = True
                    try:
                        await job()
                    except asyncio.CancelledError:
                        raise
                    except Exception:  # one failed job must not stop the chat's lane
                        log.exception("a job of chat %s:%s failed", *key)
                    finally:
                        lane.running = False
        finally:
            lane.task = None
            self._forget_if_idle(key, lane)

    def _forget_if_idle(self, key: Key, lane: _Lane) -> None:
        if lane.task is None and not lane.jobs and not lane.reserved and self._lanes.get(key) is lane:
            del self._lanes[key]
            if not self._lanes:
                self._idle.set()

    def stats(self) -> dict[str, int]:
        """Return chats with work, jobs waiting and jobs running."""
        lanes = list(self._lanes.values())
        return {
            "chats_active": sum(1 for lane in lanes if lane.task is not None or lane.waiting),
            "queued": sum(lane.waiting for lane in lanes),
            "turns_running": sum(1 for lane in lanes if lane.running),
        }

    async def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no lane has work; return whether that happened within ``timeout``."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def close(self, grace: float) -> None:
        """Drop queued jobs, let running ones finish for up to ``grace`` seconds, then cancel them.

        Running jobs are not cancelled at once: a turn cancelled in the middle of another
        slice's operation could leave that slice half-way through a database write.
        """
        tasks: list[Any] = []
        for lane in list(self._lanes.values()):
            lane.jobs.clear()
            lane.reserved = 0
            if lane.task is not None:
                tasks.append(lane.task)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                task.cancel()
            for task in pending:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._lanes.clear()
        self._idle.set()
