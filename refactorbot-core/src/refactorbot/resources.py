"""Per-slice concurrency, timeout and rate limits, and process CPU/memory readings."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from refactorbot.config import ResourceLimits
from refactorbot.errors import OperationTimeout, RateLimited, ResourceLimitExceeded


class TokenBucket:
    """A rate limiter: ``rate`` tokens a second, up to ``capacity`` saved up."""

    def __init__(self, rate: float, capacity: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.capacity = capacity
        self.tokens = capacity
        self.clock = clock
        self.updated = clock()

    def try_take(self) -> bool:
        """Take one token if there is one; return whether it was taken."""
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class SliceLimiter:
    """The enforced limits of one slice."""

    def __init__(self, slice_id: str, limits: ResourceLimits) -> None:
        self.slice_id = slice_id
        self.limits = limits
        self.semaphore = asyncio.Semaphore(limits.max_concurrency)
        self.bucket = (
            TokenBucket(limits.rate_limit, limits.burst or max(1.0, limits.rate_limit)) if limits.rate_limit else None
        )
        self.in_flight = 0
        self.refused = 0

    def take_token(self) -> None:
        """Take one token of the rate limit; raise ``RateLimited`` when there is none."""
        if self.bucket is not None and not self.bucket.try_take():
            self.refused += 1
            raise RateLimited(
                f"slice '{self.slice_id}' rate limit of {self.limits.rate_limit:g}/s exceeded; retry later"
            )

    async def acquire(self) -> None:
        """Take a concurrency slot, waiting at most ``timeout``; raise ``ResourceLimitExceeded`` after that."""
        semaphore = self.semaphore
        if not semaphore.locked():  # a free slot: taken at once, without a timer task
            await semaphore.acquire()
        else:
            try:
                await asyncio.wait_for(semaphore.acquire(), timeout=self.limits.timeout)
            except TimeoutError:
                self.refused += 1
                raise ResourceLimitExceeded(
                    f"slice '{self.slice_id}' is busy: max_concurrency={self.limits.max_concurrency} reached"
                    f" for {self.limits.timeout:g}s; retry later or raise [slices.{self.slice_id}.resources]"
                    " max_concurrency"
                ) from None
        self.in_flight += 1

    def release(self) -> None:
        """Give back the slot ``acquire`` took."""
        self.in_flight -= 1
        self.semaphore.release()

    @contextlib.asynccontextmanager
    async def admit(self) -> AsyncIterator[None]:
        """Hold a concurrency slot for the body; refuse at once when over the rate limit."""
        self.take_token()
        await self.acquire()
        try:
            yield
        finally:
            self.release()


class ResourceAllocator:
    """Hands out per-slice limits and runs operations within them."""

    def __init__(self, limits_for: Callable[[str], ResourceLimits]) -> None:
        self._limits_for = limits_for
        self._limiters: dict[str, SliceLimiter] = {}

    def limiter(self, slice_id: str) -> SliceLimiter:
        """Return (creating once) the limiter of ``slice_id``."""
        limiter = self._limiters.get(slice_id)
        if limiter is None:
            limiter = self._limiters[slice_id] = SliceLimiter(slice_id, self._limits_for(slice_id))
        return limiter

    async def run(self, slice_id: str, target: str, coro: Any) -> Any:
        """Await ``coro`` within ``slice_id``'s limits; raise a clear error when one is hit."""
        limiter = self._limiters.get(slice_id) or self.limiter(slice_id)
        try:
            limiter.take_token()
            await limiter.acquire()
            try:
                async with asyncio.timeout(limiter.limits.timeout):
                    return await coro
            finally:
                limiter.release()
        except TimeoutError:
            raise OperationTimeout(f"{target} timed out after {limiter.limits.timeout:g}s") from None
        finally:
            coro.close()  # a refused request never started its coroutine: close it quietly

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Return limits and current use per slice."""
        return {
            sid: {**lim.limits.model_dump(), "in_flight": lim.in_flight, "refused": lim.refused}
            for sid, lim in sorted(self._limiters.items())
        }


def process_stats() -> dict[str, float]:
    """Return this process's resident memory (MB), CPU seconds and CPU percent since the last call."""

    proc = _process()
    with proc.oneshot():
        threads = proc.num_threads()
        mem = proc.memory_info().rss / 1_048_576
        cpu = proc.cpu_times()
        percent = proc.cpu_percent(interval=None)
    return {
        "pid": float(os.getpid()),
        "rss_mb": round(mem, 1),
        "cpu_seconds": round(cpu.user + cpu.system, 2),
        "cpu_percent": percent,
        "threads": float(threads),
    }


_PROC: Any = None


def _process() -> Any:
    global _PROC
    import psutil

    if _PROC is None or _PROC.pid != os.getpid():
        _PROC = psutil.Process()
        _PROC.cpu_percent(interval=None)
    return _PROC
