"""Work that runs once in a deployment: a named lease, held by one process at a time.

``await singleton(ctx, name, on_acquired, on_lost)`` asks the ``provide_singleton_lease`` hook
for a lease (``refactorbot-bus-redis`` gives a Redis lock when ``[plugins.redis]`` is set) and
starts contending for it. ``on_acquired(token)`` runs once this process holds ``name``;
``on_lost()`` when it stops holding it (lost, or ``stop``). The token is a **fencing token**: it
grows each time the lease changes hands, so work stamped with it can be refused once a newer
holder exists (``is_current``, ``claim``).

Without a plugin that provides one, the lease is ``LocalLease``: one process is the whole
deployment, so it holds at once.

    lease = await singleton(self.ctx, "scheduling.timer", on_acquired=arm, on_lost=disarm)
    ...
    if await lease.claim(token, ["nightly@1718000000"]):   # still the holder, and not claimed before
        ...
    await lease.stop()
"""

from __future__ import annotations

import abc
import asyncio
import logging
import os
import re
import socket
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

log = logging.getLogger("refactorbot.singleton")

#: What ``on_acquired`` is: awaited with the fencing token once this process holds the lease.
OnAcquired = Callable[[int], Awaitable[None]]
#: What ``on_lost`` is: awaited when this process stops holding the lease.
OnLost = Callable[[], Awaitable[None]]

_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,200}$")


def check_lease_name(name: str) -> str:
    """Return ``name`` if it is a valid lease name (1-200 letters, digits, ``_ . : -``); else ``ValueError``."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"singleton name {name!r} must be 1-200 letters, digits, '_', '.', ':' or '-'")
    return name


class SingletonLease(abc.ABC):
    """One named lease: ``start`` contends, ``on_acquired(token)`` runs on the holder, ``stop`` lets go.

    Attributes: ``name``; ``token`` (the fencing token while this process holds it, else
    ``None``); ``holding`` (an ``asyncio.Event`` set while it holds it); ``holder`` (who holds it,
    as far as this process knows: its owner string, ``None`` when unknown or free); ``owner``
    (this process's owner string); ``contended`` (whether, before it took the lease it holds now,
    this process found it held by another: a takeover, when ``on_acquired`` runs).
    """

    def __init__(self, name: str, on_acquired: OnAcquired, on_lost: OnLost, owner: str) -> None:
        self.name = check_lease_name(name)
        self.on_acquired = on_acquired
        self.on_lost = on_lost
        self.owner = owner
        self.token: int | None = None
        self.holder: str | None = None
        #: Whether this process waited on another holder before taking the lease it holds now.
        self.contended = False
        #: Set while this process holds the lease (status pages and tests wait on it).
        self.holding = asyncio.Event()

    @abc.abstractmethod
    async def start(self) -> None:
        """Begin contending (returns at once, or once held where holding is immediate)."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Stop contending; if held, run ``on_lost`` and free the lease for the next holder."""

    @abc.abstractmethod
    async def is_current(self, token: int) -> bool:
        """Whether ``token`` is still the newest: no other process took the lease since it was given."""

    @abc.abstractmethod
    async def claim(self, token: int, keys: Iterable[str]) -> set[str]:
        """Claim pieces of work under ``token``; return the keys this call claimed.

        Nothing is claimed unless ``token`` is current. A lease shared by several processes also
        remembers claimed keys for a while, so a key claimed once (by any holder) is not claimed
        again; ``LocalLease`` leaves that to the caller's own records.
        """


class LocalLease(SingletonLease):
    """The lease of a deployment of one process: held from ``start`` to ``stop``.

    Tokens grow per name within the process, so a lease stopped and started again holds a
    newer token, and work stamped with the old one is refused.
    """

    _tokens: dict[str, int] = {}

    async def start(self) -> None:
        """Hold the lease at once: run ``on_acquired`` with a new token."""
        if self.token is not None:
            return
        token = LocalLease._tokens.get(self.name, 0) + 1
        LocalLease._tokens[self.name] = token
        self.token, self.holder = token, self.owner
        self.holding.set()
        try:
            await self.on_acquired(token)
        except Exception:
            log.exception("singleton %s: starting under token %d failed", self.name, token)
            await self._lose()

    async def stop(self) -> None:
        """Run ``on_lost`` if held, and let go."""
        if self.token is not None:
            await self._lose()

    async def _lose(self) -> None:
        token, self.token, self.holder = self.token, None, None
        self.holding.clear()
        try:
            await self.on_lost()
        except Exception:
            log.exception("singleton %s: stopping what ran under token %s failed", self.name, token)

    async def is_current(self, token: int) -> bool:
        """Whether this lease holds ``token`` now."""
        return self.token is not None and token == self.token

    async def claim(self, token: int, keys: Iterable[str]) -> set[str]:
        """Every key while ``token`` is held; none after."""
        return set(keys) if await self.is_current(token) else set()


def process_owner() -> str:
    """Return this process's owner string: ``<hostname>:<pid>``."""
    return f"{socket.gethostname()}:{os.getpid()}"


async def singleton(ctx: Any, name: str, on_acquired: OnAcquired, on_lost: OnLost) -> SingletonLease:
    """Start contending for ``name`` and return its lease; ``on_acquired(token)`` runs on the holder.

    ``ctx`` is a ``SliceContext`` (or anything with ``host``, ``settings`` and ``env``): the lease
    comes from the first plugin whose ``provide_singleton_lease`` returns one, else it is a
    ``LocalLease``. Call ``await lease.stop()`` when the work should end (a slice's ``stop``).
    """
    check_lease_name(name)
    host = getattr(ctx, "host", None)
    plugins = getattr(host, "plugins", None) if host is not None else None
    lease: SingletonLease | None = None
    if plugins is not None and hasattr(plugins, "afirstresult"):
        env: Mapping[str, str] = getattr(ctx, "env", None) or os.environ
        lease = await plugins.afirstresult(
            "provide_singleton_lease",
            name=name,
            on_acquired=on_acquired,
            on_lost=on_lost,
            config=getattr(ctx, "settings", None),
            env=env,
        )
    if lease is None:
        lease = LocalLease(name, on_acquired, on_lost, process_owner())
    await lease.start()
    return lease
