"""A lock held by one process of a deployment at a time, with a fencing token; ``Singleton`` on top.

``rb:{ns}:lock:<name>`` holds ``<owner> <token>`` with a time to live; ``rb:{ns}:lock:<name>:fence``
counts the tokens. Each time the lock changes hands the token grows, so work stamped with a
token can be refused once a newer holder exists (``RedisLock.is_current``). A holder that stops
renewing — killed, paused, cut off — loses the lock when its TTL runs out, and the next
``acquire`` anywhere takes it with a larger token.

    singleton = Singleton(config, "scheduler.timer", on_acquired=arm, on_lost=disarm, ttl=10)
    await singleton.start()     # tries every ttl/3; runs on_acquired(token) when it wins
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from refactorbot import SingletonLease

from refactorbot_bus_redis.config import Keys, RedisConfig, client_of

log = logging.getLogger("refactorbot.redis.lock")

# KEYS: lock, fence; ARGV: owner, ttl ms. Returns the token held (new or kept), or nil.
_ACQUIRE = """
local held = redis.call('GET', KEYS[1])
if held then
  local sep = string.find(held, ' ', 1, true)
  if string.sub(held, 1, sep - 1) == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
    return tonumber(string.sub(held, sep + 1))
  end
  return nil
end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. token, 'PX', tonumber(ARGV[2]))
return token
"""

# KEYS: lock; ARGV: owner, token, ttl ms. 1 if still held (and extended), else 0.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] .. ' ' .. ARGV[2] then
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
  return 1
end
return 0
"""

# KEYS: lock; ARGV: owner, token. 1 if it was held and is now free.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] .. ' ' .. ARGV[2] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


# KEYS: fence; ARGV: token, keep ms, claim key prefix, keys... Claims each key not claimed
# before (SET NX, kept ``keep`` ms) if the token is still the newest; returns the keys claimed.
_CLAIM = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return {}
end
local claimed = {}
for i = 4, #ARGV do
  if redis.call('SET', ARGV[3] .. ARGV[i], ARGV[1], 'NX', 'PX', tonumber(ARGV[2])) then
    claimed[#claimed + 1] = ARGV[i]
  end
end
return claimed
"""

#: How long a claimed key is remembered (ms): a day.
CLAIM_KEEP_MS = 86_400_000


class RedisLock:
    """One named lock: ``acquire`` returns a fencing token or ``None``; ``renew``; ``release``."""

    def __init__(self, client: Any, namespace: str, name: str, owner: str, ttl: float) -> None:
        if not name or any(c.isspace() for c in name):
            raise ValueError(f"lock name {name!r} must be non-empty without spaces")
        if ttl <= 0:
            raise ValueError("lock ttl must be positive")
        keys = Keys(namespace)
        self.key = keys.key("lock", name)
        self.fence_key = keys.key("lock", name, "fence")
        self.name = name
        self.owner = owner
        self.ttl_ms = max(1, int(ttl * 1000))
        self._acquire = client.register_script(_ACQUIRE)
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self._claim = client.register_script(_CLAIM)
        self.claim_prefix = keys.key("lock", name, "claim") + ":"
        self._client = client

    async def acquire(self) -> int | None:
        """Take the lock (or extend it if this owner holds it); return its token, ``None`` if another holds it."""
        token = await self._acquire(keys=[self.key, self.fence_key], args=[self.owner, self.ttl_ms])
        return None if token is None else int(token)

    async def renew(self, token: int) -> bool:
        """Extend the lock held with ``token``; ``False`` if it was lost (expired, or taken since)."""
        return bool(await self._renew(keys=[self.key], args=[self.owner, token, self.ttl_ms]))

    async def release(self, token: int) -> bool:
        """Free the lock if it is still held with ``token``."""
        return bool(await self._release(keys=[self.key], args=[self.owner, token]))

    async def is_current(self, token: int) -> bool:
        """Whether ``token`` is the newest one given: no other holder took the lock since."""
        latest = await self._client.get(self.fence_key)
        return latest is not None and int(latest) == token

    async def claim(self, token: int, keys: list[str]) -> set[str]:
        """Claim ``keys`` under ``token`` in one step: none if a newer token exists, else those not claimed before."""
        if not keys:
            return set()
        claimed = await self._claim(keys=[self.fence_key], args=[token, CLAIM_KEEP_MS, self.claim_prefix, *keys])
        return {k.decode() if isinstance(k, bytes) else str(k) for k in claimed}

    async def holder(self) -> str | None:
        """Return the owner holding the lock now, or ``None`` when it is free."""
        held = await self._client.get(self.key)
        if held is None:
            return None
        text = held.decode() if isinstance(held, bytes) else str(held)
        return text.rsplit(" ", 1)[0]


OnAcquired = Callable[[int], Awaitable[None]]
OnLost = Callable[[], Awaitable[None]]


class Singleton(SingletonLease):
    """Run something once in a deployment: ``on_acquired(token)`` on the process that holds ``name``.

    The ``SingletonLease`` that ``provide_singleton_lease`` returns when ``[plugins.redis]`` is set.

    Every process calls ``start``; one wins the lock and runs ``on_acquired``, renewing every
    ``ttl / 3`` seconds. If a renewal finds the lock lost (or Redis unreachable for longer than
    the TTL, when another process may have taken it), ``on_lost`` runs and this process tries
    again like the others. ``stop`` runs ``on_lost`` if it held the lock and frees it at once.
    """

    def __init__(
        self,
        config: RedisConfig,
        name: str,
        on_acquired: OnAcquired,
        on_lost: OnLost,
        *,
        ttl: float = 10.0,
        owner: str | None = None,
    ) -> None:
        super().__init__(name, on_acquired, on_lost, owner or config.consumer_name())
        if ttl <= 0:
            raise ValueError("lock ttl must be positive")
        self.config = config
        self.ttl = ttl
        self._client: Any = None
        self._lock: RedisLock | None = None
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    async def start(self) -> None:
        """Begin contending for the lock (returns at once)."""
        # A command may take no longer than a third of the TTL, or a renewal could end after the lock did.
        self._client = client_of(self.config, socket_timeout=max(0.05, self.ttl / 3))
        self._lock = RedisLock(self._client, self.config.namespace, self.name, self.owner, self.ttl)
        self._stop.clear()
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"singleton {self.name}")

    async def stop(self) -> None:
        """Stop contending; if held, run ``on_lost`` and free the lock for the next holder."""
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(Exception):
                await self._task
            self._task = None
        if self.token is not None:
            await self._lose()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def is_current(self, token: int) -> bool:
        """Whether ``token`` is still the newest in Redis (``False`` when Redis cannot say)."""
        if self._lock is None:
            return False
        try:
            return await self._lock.is_current(token)
        except Exception as exc:
            log.warning("singleton %s: cannot check token %d (%s)", self.name, token, exc)
            return False

    async def claim(self, token: int, keys: Iterable[str]) -> set[str]:
        """Claim ``keys`` in Redis under ``token``: none once a newer holder exists, or when Redis cannot say."""
        if self._lock is None:
            return set()
        try:
            return await self._lock.claim(token, list(keys))
        except Exception as exc:
            log.warning("singleton %s: cannot claim under token %d (%s)", self.name, token, exc)
            return set()

    async def _lose(self) -> None:
        token, self.token, self.holder = self.token, None, None
        self.holding.clear()
        try:
            await self.on_lost()
        except Exception:
            log.exception("singleton %s: stopping what ran under token %s failed", self.name, token)
        if self._lock is not None and token is not None:
            with contextlib.suppress(Exception):
                await self._lock.release(token)

    async def _run(self) -> None:
        assert self._lock is not None
        lock = self._lock
        interval = self.ttl / 3
        loop = asyncio.get_running_loop()
        renewed_at = 0.0
        waited = False
        while not self._stop.is_set():
            try:
                if self.token is None:
                    token = await lock.acquire()
                    if token is not None:
                        self.token, self.holder, renewed_at = token, self.owner, loop.time()
                        self.contended, waited = waited, False
                        log.info("singleton %s held by %s (token %d)", self.name, self.owner, token)
                        self.holding.set()
                        try:
                            await self.on_acquired(token)
                        except Exception:
                            log.exception(
                                "singleton %s: starting under token %d failed; letting it go", self.name, token
                            )
                            await self._lose()
                    else:
                        waited = True
                        self.holder = await lock.holder()
                elif await lock.renew(self.token):
                    renewed_at = loop.time()
                else:
                    log.warning("singleton %s: lock lost by %s (token %d)", self.name, self.owner, self.token)
                    await self._lose()
            except Exception as exc:
                if self.token is not None and loop.time() - renewed_at >= self.ttl:
                    log.warning("singleton %s: Redis unreachable past the TTL (%s); stopping", self.name, exc)
                    await self._lose()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), interval)
