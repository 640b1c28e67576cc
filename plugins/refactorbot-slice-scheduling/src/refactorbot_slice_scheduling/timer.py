"""One timer for every job: a heap of due times and a single ``loop.call_at`` armed for the earliest.

Nothing polls: with no job due the loop sleeps until the earliest one. The timer never fires
early: the loop's clock is monotonic, due times are wall-clock, so on waking the wall clock is
compared with the due time and the timer re-armed for what is left.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections.abc import Callable


class JobTimer:
    """Due times of jobs (by id); calls ``on_due(ids)`` with every job whose time has come."""

    def __init__(self, on_due: Callable[[list[int]], None], *, held: bool = False) -> None:
        """``held``: keep due times but fire nothing until ``release``."""
        self._on_due = on_due
        self._held = held
        self._heap: list[tuple[float, int]] = []
        self._due: dict[int, float] = {}
        self._handle: asyncio.TimerHandle | None = None
        self._armed_for: float | None = None

    @property
    def armed_for(self) -> float | None:
        """Return the wall-clock time the timer is armed for, or ``None``."""
        return self._armed_for

    def __len__(self) -> int:
        return len(self._due)

    def set(self, job_id: int, due: float | None) -> None:
        """Schedule ``job_id`` at ``due`` (Unix time), replacing its earlier time; ``None`` removes it."""
        if due is None:
            self._due.pop(job_id, None)
        else:
            self._due[job_id] = due
            heapq.heappush(self._heap, (due, job_id))
        self._arm()

    def clear(self) -> None:
        """Forget every job and disarm."""
        self._heap.clear()
        self._due.clear()
        self._disarm()

    @property
    def held(self) -> bool:
        """Return whether the timer keeps due times without firing (built ``held``, or ``hold``)."""
        return self._held

    def hold(self) -> None:
        """Stop firing but keep every due time (``release`` fires what came due meanwhile)."""
        self._held = True
        self._disarm()

    def release(self) -> None:
        """Start firing (a timer built ``held``): what is already due goes out at once."""
        self._held = False
        self._arm()

    def _earliest(self) -> float | None:
        while self._heap:
            due, job_id = self._heap[0]
            if self._due.get(job_id) == due:
                return due
            heapq.heappop(self._heap)  # replaced or removed since it was pushed
        return None

    def _disarm(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._handle = None
        self._armed_for = None

    def _arm(self) -> None:
        if self._held:
            return
        earliest = self._earliest()
        if earliest == self._armed_for and self._handle is not None:
            return
        self._disarm()
        if earliest is None:
            return
        loop = asyncio.get_running_loop()
        self._armed_for = earliest
        self._handle = loop.call_at(loop.time() + max(0.0, earliest - time.time()), self._wake)

    def _wake(self) -> None:
        self._handle = None
        self._armed_for = None
        now = time.time()
        due: list[int] = []
        while True:
            earliest = self._earliest()
            if earliest is None or earliest > now:
                break
            _, job_id = heapq.heappop(self._heap)
            del self._due[job_id]
            due.append(job_id)
        self._arm()  # woken early (clocks disagree) re-arms for the time left, and due ones go out
        if due:
            self._on_due(due)
